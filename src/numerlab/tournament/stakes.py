"""Atomic Blockchain Staking ("v3"): a model's positions and claims, the staking contract,
and the signed authorization that opens one position, read over numerapi's v3 calls.

Under ABS a stake is a position per (round, staker, model), locked in Numerai's staking
contract until the round resolves, then claimable for stake + payout - burn. Numerai's API
answers what a wallet needs and nothing moves money here: `v3StakeAuth` signs an
authorization for one selected submission (up to `maxAmount` NMR), which the staker's wallet
or allocation strategy submits to the contract (`v3StakeConfig().address`); `v3StakeClaim`
gives the Merkle claim of a resolved position. numerlab holds no private key and signs
nothing.

Where the numbers come from (numerapi 3.1.1):
- positions: `round_model_performances_v2` (`v2RoundModelPerformances`), the one call that
  reports the NMR at risk per round (`atRisk`) with whether the round resolved; its
  deprecation points to `submission_scores`, which has no stake. A round with NMR at risk is
  a position; its on-chain state comes from `v3_stake_round` (round id = round number).
- claims: `v3_stake_claim(round, model id, staker)` for positions resolved within the last
  CLAIM_GRACE (Numerai finalizes older ones itself); payout and burn arrive in wei. Whether a
  claim was already collected is on-chain only: the claim is shown as available.
- the staker's balance is on-chain only: numerapi does not read it (the legacy Numerai
  wallet, `account.availableNmr`, no longer funds stakes).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from numerlab import settings
from numerlab.errors import NumerlabError
from numerlab.tournament.config import GROUP
from numerlab.tournament.transport import NumeraiApiError

if TYPE_CHECKING:
    from numerlab.tournament.client import TournamentClient

ABS, V2 = "abs", "v2"
STAKING_SYSTEMS = (ABS, V2)  # tournament.staking
WEI_PER_NMR = Decimal(10) ** 18
NMR_DECIMALS = 8  # an amount sent to Numerai has at most 8 decimals
CLAIM_GRACE = timedelta(days=7)  # Numerai finalizes a position unclaimed for longer
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


# --- config -----------------------------------------------------------------------------

def staking_system(cfg: Mapping[str, Any]) -> str:
    """`tournament.staking`: "abs" (Atomic Blockchain Staking, the default) or "v2" (the
    legacy continuous stake of a tournament not migrated yet)."""
    return settings.choice(f"{GROUP}.staking", cfg.get("staking"), STAKING_SYSTEMS)


def wallet_address(cfg: Mapping[str, Any]) -> str | None:
    """`tournament.wallet_address` checked (an Ethereum address, 0x + 40 hex), or None."""
    value = cfg.get("wallet_address")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value.strip()):
        raise NumerlabError(f"{GROUP}.wallet_address={value!r} must be an Ethereum address "
                            f"(0x and 40 hex digits): the staker wallet of your ABS positions")
    return value.strip()


def nmr_text(amount: float | Decimal) -> str:
    """An NMR amount as Numerai takes it: a decimal string, cut (never rounded up) to
    NMR_DECIMALS, no exponent."""
    value = Decimal(repr(amount) if isinstance(amount, float) else amount)
    cut = value.quantize(Decimal(1).scaleb(-NMR_DECIMALS), rounding=ROUND_DOWN)
    text = format(cut, "f").rstrip("0").rstrip(".")
    return text or "0"


# --- what the API reports ---------------------------------------------------------------

@dataclass(frozen=True)
class StakeContract:
    """`v3StakeConfig`: where positions are opened."""

    address: str
    nmr_address: str | None
    authorization_signer: str | None
    paused: bool


@dataclass(frozen=True)
class ChainRound:
    """`v3StakeRound`: a round's on-chain state ("open", "closed", "resolving",
    "resolved", ...) and time boundaries."""

    number: int
    state: str | None
    resolved: bool
    open_time: datetime | None
    close_time: datetime | None
    resolve_time: datetime | None


@dataclass(frozen=True)
class Position:
    """NMR locked for one round of a model; `resolved` as Numerai reports it."""

    round: int
    stake: float
    resolved: bool
    resolve_time: datetime | None


@dataclass(frozen=True)
class Claim:
    """A resolved position's claim: stake + payout - burn comes back to the staker."""

    round: int
    stake: float
    payout: float
    burn: float

    @property
    def claimable(self) -> float:
        return self.stake + self.payout - self.burn


@dataclass(frozen=True)
class Book:
    """A model's ABS positions now: the open ones with their round's on-chain state, and
    the claims of resolved ones (None: no staker address to ask for)."""

    open: tuple[tuple[Position, ChainRound], ...]
    claims: tuple[Claim, ...] | None

    @property
    def locked(self) -> float:
        """NMR locked in the open positions."""
        return float(sum(position.stake for position, _ in self.open))

    @property
    def per_round_stake(self) -> float:
        """The newest open position's stake (0 without one): the per-round stake now."""
        return self.open[0][0].stake if self.open else 0.0

    @property
    def claimable(self) -> float | None:
        return None if self.claims is None else float(sum(c.claimable for c in self.claims))

    def record(self) -> dict[str, Any]:
        """JSON-ready: per-round stake, locked, positions, claims."""
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "per_round_stake": self.per_round_stake, "locked": self.locked,
            "positions": [{"round": p.round, "stake": p.stake, "state": r.state,
                           "resolve_time": iso(r.resolve_time or p.resolve_time)}
                          for p, r in self.open],
            "claims": None if self.claims is None else [
                {"round": c.round, "stake": c.stake, "payout": c.payout, "burn": c.burn,
                 "claimable": c.claimable} for c in self.claims],
            "claimable": self.claimable}


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _chain_time(value: Any) -> datetime | None:
    """On-chain times come as unix seconds; ISO text is taken too."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _as_utc(value: Any) -> datetime | None:
    """A datetime (numerapi parses some fields; `submission_ids` leaves ISO text) in UTC."""
    if isinstance(value, str):
        return _chain_time(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AbsStakes:
    """A model's ABS positions and claims, the contract, and authorizations, over a
    `TournamentClient` (its transport, retries and one-line errors)."""

    def __init__(self, client: TournamentClient):
        self.client = client
        self._rounds: dict[int, ChainRound] = {}

    def contract(self) -> StakeContract:
        with self.client._numerapi("v3StakeConfig"):
            answer = self.client.api.v3_stake_config() or {}
        address = answer.get("address")
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise NumeraiApiError("Numerai API v3StakeConfig: no staking contract address")
        return StakeContract(address=address, nmr_address=answer.get("nmrAddress"),
                             authorization_signer=answer.get("authorizationSigner"),
                             paused=bool(answer.get("paused")))

    def chain_round(self, number: int) -> ChainRound:
        """`v3StakeRound` of round `number` (asked once per client)."""
        if number not in self._rounds:
            with self.client._numerapi("v3StakeRound"):
                answer = self.client.api.v3_stake_round(number) or {}
            self._rounds[number] = ChainRound(
                number=number, state=answer.get("state"), resolved=bool(answer.get("resolved")),
                open_time=_chain_time(answer.get("openTime")),
                close_time=_chain_time(answer.get("closeTime")),
                resolve_time=_chain_time(answer.get("resolveTime")))
        return self._rounds[number]

    def positions(self, model_name: str) -> list[Position]:
        """The model's rounds with NMR at risk, newest first."""
        model_id = self.client.model_id(model_name)
        with self.client._numerapi("v2RoundModelPerformances"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the only per-round stake
            rows = self.client.api.round_model_performances_v2(model_id) or []
        found = []
        for row in rows:
            stake = _decimal(row.get("atRisk"))
            if stake is None or stake <= 0 or row.get("roundNumber") is None:
                continue
            found.append(Position(round=int(row["roundNumber"]), stake=float(stake),
                                  resolved=bool(row.get("roundResolved")),
                                  resolve_time=_as_utc(row.get("roundResolveTime"))))
        return sorted(found, key=lambda p: -p.round)

    def claims(self, model_name: str, staker: str, positions: list[Position],
               now: datetime | None = None) -> list[Claim]:
        """The claims of `positions` resolved within CLAIM_GRACE of `now`."""
        model_id = self.client.model_id(model_name)
        moment = now or datetime.now(UTC)
        found = []
        for position in positions:
            if not position.resolved or (position.resolve_time is not None
                                         and moment - position.resolve_time > CLAIM_GRACE):
                continue
            with self.client._numerapi("v3StakeClaim"):
                answer = self.client.api.v3_stake_claim(position.round, model_id,
                                                        staker) or {}
            payout, burn = (_decimal(answer.get(k)) for k in ("payoutAmountWei",
                                                             "burnAmountWei"))
            if payout is None or burn is None:
                raise NumeraiApiError(f"Numerai API v3StakeClaim: no payout or burn for "
                                      f"round {position.round}")
            found.append(Claim(round=position.round, stake=position.stake,
                               payout=float(payout / WEI_PER_NMR),
                               burn=float(burn / WEI_PER_NMR)))
        return found

    def book(self, model_name: str, staker: str | None, now: datetime | None = None) -> Book:
        """The model's open positions (with `v3_stake_round` of each round) and, with a
        staker address, its claims."""
        positions = self.positions(model_name)
        open_positions = tuple((p, self.chain_round(p.round)) for p in positions
                               if not p.resolved)
        claims = (None if staker is None
                  else tuple(self.claims(model_name, staker, positions, now)))
        return Book(open=open_positions, claims=claims)

    def latest_submission(self, model_name: str) -> str:
        """Id of the model's newest submission (what an authorization is for)."""
        model_id = self.client.model_id(model_name)
        with self.client._numerapi("submissions"):
            rows = [r for r in self.client.api.submission_ids(model_id) or []
                    if isinstance(r, dict) and r.get("id")]
        if not rows:
            raise NumerlabError(f"model {model_name!r} has no submission to stake on: submit "
                                f"for the open round first (task=live tournament.submit=true)")
        newest = max(rows, key=lambda r: _as_utc(r.get("insertedAt"))
                     or datetime.min.replace(tzinfo=UTC))
        return str(newest["id"])

    def authorize(self, submission_id: str, staker: str, max_amount: float | Decimal
                  ) -> dict[str, Any]:
        """`v3StakeAuth`: Numerai's signed authorization to stake up to `max_amount` NMR
        from `staker` on the submission's round; refused if the answer allows more."""
        amount = nmr_text(max_amount)
        if Decimal(amount) <= 0:
            raise NumerlabError(f"a stake authorization needs max_amount > 0 NMR, got "
                                f"{max_amount!r}")
        with self.client._numerapi("v3StakeAuth"):
            answer = self.client.api.v3_stake_auth(submission_id, staker,
                                                   max_amount=amount) or {}
        allowed = _decimal(answer.get("maxAmount"))
        if allowed is None or allowed > Decimal(amount):
            raise NumeraiApiError(f"Numerai API v3StakeAuth: the authorization allows "
                                  f"{answer.get('maxAmount')!r} NMR, not the {amount} asked")
        return dict(answer)
