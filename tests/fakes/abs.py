"""Atomic Blockchain Staking ("v3") on the fake Numerai: what a migrated tournament answers.

Numerai's docs (numerai-tournament/atomic-blockchain-staking.md): a stake is a position per
(round, staker, model), locked in the staking contract and claimable once the round
resolves; the API fields are `v3StakeConfig`, `v3StakeRound`, `v3StakeAuth` (a signed
authorization for one selected submission) and `v3StakeClaim` (the Merkle claim of a resolved
position); "Once a tournament's Atomic Blockchain Staking flag is enabled, the legacy V2
staking mutations for that tournament are disabled." The operations and fields answered here
are those numerapi 3.1.1 sends (`v3_stake_config`, `v3_stake_round`, `v3_stake_auth`,
`v3_stake_claim`, `submission_ids`, `round_model_performances_v2`); v3 round amounts are NMR
decimal strings, claim amounts wei strings, on-chain times unix seconds, as in numerapi's own
tests of these calls.

Installed on every FakeNumerai as `fake.abs` (`install`), migrated by default, as Numerai's
tournaments are since mid-2026:

    fake.abs.migrated = False                 # a tournament not migrated: v2 mutations work
    fake.abs.add_position("my_model", 1001, stake=5)       # a locked position
    fake.abs.resolve(1001, {"my_model": 0.4})               # payout +0.4 NMR (negative: burn)
    fake.abs.submit("my_model")               # a selected submission in the current round
    fake.abs.authorizations                   # every v3StakeAuth answered
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from fakes.numerai_server import TOURNAMENT, GraphQLFailure, Submission, _iso

if TYPE_CHECKING:
    from fakes.numerai_server import FakeNumerai

WEI = Decimal(10) ** 18
V2_DISABLED = ("The legacy V2 staking mutations for that tournament are disabled. Use the "
               "Atomic Blockchain Staking flow and staking v3 API fields instead.")
NO_SCOPE = "Insufficient permission for web3_staking"
V2_MUTATIONS = ("v2ChangeStake", "releaseStake")
V3_OPERATIONS = ("v3StakeConfig", "v3StakeRound", "v3StakeAuth", "v3StakeClaim")
NMR_TOKEN = "0x1776e1f26f98b1a5df9cd347953a26dd3cb46671"  # the NMR token contract


def _address(seed: str) -> str:
    return "0x" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def _hex32(seed: str) -> str:
    return "0x" + hashlib.sha256(seed.encode()).hexdigest()


def _unix(moment: datetime) -> str:
    return str(int(moment.timestamp()))


@dataclass
class Position:
    """NMR locked for one (round, staker, model); payout/burn set when the round resolves."""

    round_number: int
    model_id: str
    staker: str
    stake: Decimal
    payout: Decimal = Decimal(0)
    burn: Decimal = Decimal(0)


@dataclass
class ChainRound:
    number: int
    open_time: datetime
    close_time: datetime
    resolve_time: datetime
    resolved: bool = False


@dataclass
class AbsState:
    """The staking contract and Numerai's v3 API as the fake sees them."""

    migrated: bool = True  # False: a tournament not yet migrated (v2 mutations accepted)
    web3_scope: bool = True  # False: the API key lacks the `web3_staking` scope
    contract: str = _address("staking-contract")
    signer: str = _address("authorization-signer")
    paused: bool = False
    positions: list[Position] = field(default_factory=list)
    rounds: dict[int, ChainRound] = field(default_factory=dict)
    authorizations: list[dict[str, Any]] = field(default_factory=list)


class AbsStaking:
    """The ABS part of a FakeNumerai: its state, helpers for tests, and the resolvers."""

    def __init__(self, fake: FakeNumerai):
        self.fake = fake
        self.state = AbsState()

    # -- switches and setup ------------------------------------------------------------

    @property
    def migrated(self) -> bool:
        return self.state.migrated

    @migrated.setter
    def migrated(self, value: bool) -> None:
        self.state.migrated = value

    @property
    def authorizations(self) -> list[dict[str, Any]]:
        return self.state.authorizations

    def _round(self, number: int) -> ChainRound:
        known = self.state.rounds.get(number)
        if known is not None:
            return known
        current = self.fake.state.current_round
        now = datetime.now(UTC)
        if current is not None and current["number"] == number:
            opens = datetime.fromisoformat(current["openTime"])
            closes = datetime.fromisoformat(current["closeTime"])
        else:  # an earlier round: closed, resolving
            opens, closes = now - timedelta(days=3), now - timedelta(days=2)
        created = ChainRound(number, opens, closes, closes + timedelta(days=30))
        self.state.rounds[number] = created
        return created

    def add_position(self, model_name: str, round_number: int, stake: float | str,
                     staker: str | None = None) -> Position:
        """A position of `stake` NMR on `model_name` in round `round_number`, locked."""
        with self.fake.lock:
            model = self.fake.state.models[model_name]
            self._round(round_number)
            position = Position(round_number, model.id, (staker or WALLET).lower(),
                                Decimal(str(stake)))
            self.state.positions.append(position)
            return position

    def resolve(self, round_number: int, payouts: Mapping[str, float | str],
                resolved_ago: timedelta = timedelta(days=1)) -> None:
        """Round `round_number` resolves: model name -> payout NMR (a negative one is a
        burn) for its positions; the claims become available."""
        with self.fake.lock:
            chain_round = self._round(round_number)
            chain_round.resolved = True
            chain_round.resolve_time = datetime.now(UTC) - resolved_ago
            ids = {m.id: name for name, m in self.fake.state.models.items()}
            for position in self.state.positions:
                if position.round_number != round_number:
                    continue
                amount = Decimal(str(payouts.get(ids.get(position.model_id, ""), 0)))
                position.payout, position.burn = max(amount, Decimal(0)), max(-amount,
                                                                              Decimal(0))

    def submit(self, model_name: str, round_number: int | None = None,
               inserted_at: datetime | None = None) -> Submission:
        """A selected submission of `model_name` in `round_number` (default: the current
        round), as if uploaded."""
        with self.fake.lock:
            model = self.fake.state.models[model_name]
            number = round_number if round_number is not None else (
                self.fake.state.current_round or {}).get("number")
            submission = Submission(str(uuid.uuid4()), model.id, "submission.csv",
                                    b"id,prediction\n", number)
            if inserted_at is not None:
                submission.inserted_at = inserted_at
            self.fake.state.submissions.append(submission)
            return submission

    # -- resolvers ---------------------------------------------------------------------

    def _needs_scope(self) -> None:
        if not self.state.web3_scope:
            raise GraphQLFailure(NO_SCOPE)

    def v2_mutation(self, operation: str) -> Any:
        original = getattr(type(self.fake), f"_op_{operation}")

        def resolve(variables: Mapping[str, Any]) -> Any:
            if self.state.migrated:
                raise GraphQLFailure(V2_DISABLED)
            return original(self.fake, variables)

        return resolve

    def v3StakeConfig(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        self._needs_scope()
        return {"address": self.state.contract,
                "authorizationSigner": self.state.signer, "nmrAddress": NMR_TOKEN,
                "owner": _address("owner"), "paused": self.state.paused,
                "pendingOwner": None, "serviceWallet": _address("service-wallet")}

    def v3StakeRound(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        self._needs_scope()
        number = _round_number(variables.get("roundId"))
        current = self.fake.state.current_round
        if number not in self.state.rounds and not (current and current["number"] == number):
            raise GraphQLFailure(f"Round not found: {variables.get('roundId')}")
        chain_round = self._round(number)
        now = datetime.now(UTC)
        state = ("resolved" if chain_round.resolved else "open"
                 if chain_round.open_time <= now < chain_round.close_time else "closed")
        held = [p for p in self.state.positions if p.round_number == number]
        payout = sum((p.payout for p in held), Decimal(0))
        burn = sum((p.burn for p in held), Decimal(0))
        return {"closeTime": _unix(chain_round.close_time),
                "merkleRoot": _hex32(f"root-{number}") if chain_round.resolved else None,
                "openTime": _unix(chain_round.open_time), "payoutFactor": None,
                "remainingBurn": str(burn), "remainingPayout": str(payout),
                "resolveTime": _unix(chain_round.resolve_time),
                "resolved": chain_round.resolved, "roundId": str(number),
                "stakeCap": None, "stakeThreshold": None, "state": state,
                "totalPayout": str(payout),
                "totalStaked": str(sum((p.stake for p in held), Decimal(0))),
                "tournamentId": str(TOURNAMENT)}

    def v3StakeAuth(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        self._needs_scope()
        submission = next((s for s in self.fake.state.submissions
                           if s.id == variables.get("submissionId")), None)
        if submission is None:
            raise GraphQLFailure(f"Submission not found: {variables.get('submissionId')}")
        current = self.fake.state.current_round
        now = datetime.now(UTC)
        if (current is None or submission.round_number != current["number"]
                or not datetime.fromisoformat(current["openTime"]) <= now
                < datetime.fromisoformat(current["closeStakingTime"])):
            raise GraphQLFailure("Staking is closed for this submission's round")
        staker = str(variables.get("staker") or "")
        if not _is_address(staker):
            raise GraphQLFailure(f"Invalid staker address: {staker}")
        try:
            amount = Decimal(str(variables.get("maxAmount")))
        except InvalidOperation:
            amount = Decimal(-1)
        if not amount.is_finite() or amount <= 0:
            raise GraphQLFailure(f"Invalid maxAmount: {variables.get('maxAmount')}")
        nonce = str(len(self.state.authorizations))
        answer = {
            "authorizationSigner": self.state.signer,
            "authorizationDigest": _hex32(f"digest-{submission.id}-{nonce}"),
            "chainId": "1", "deadline": _unix(now + timedelta(minutes=30)),
            "maxAmount": variables.get("maxAmount"),
            "modelId": _hex32(f"model-{submission.model_id}"), "nmrAddress": NMR_TOKEN,
            "nonce": nonce, "roundId": str(submission.round_number),
            "signature": "0x" + hashlib.sha512(f"sig-{nonce}".encode()).hexdigest()[:130],
            "staker": staker.lower(), "stakingAddress": self.state.contract,
            "submissionId": submission.id,
            "submissionHash": _hex32(f"submission-{submission.id}"),
            "tournamentId": str(TOURNAMENT)}
        self.state.authorizations.append(answer)
        return answer

    def v3StakeClaim(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        self._needs_scope()
        number = _round_number(variables.get("roundId"))
        model_id, staker = variables.get("modelId"), str(variables.get("staker") or "")
        chain_round = self.state.rounds.get(number)
        if chain_round is None or not chain_round.resolved:
            raise GraphQLFailure(f"Round {number} is not resolved")
        position = next((p for p in self.state.positions if p.round_number == number
                         and p.model_id == model_id and p.staker == staker.lower()), None)
        if position is None:
            raise GraphQLFailure("Claim not found")
        return {"apiModelId": model_id, "burnAmountWei": str(int(position.burn * WEI)),
                "merkleRoot": _hex32(f"root-{number}"), "modelId": _hex32(f"model-{model_id}"),
                "payoutAmountWei": str(int(position.payout * WEI)),
                "proof": [_hex32(f"proof-{number}-{model_id}")], "roundId": str(number),
                "staker": position.staker, "submissionId": None,
                "tournamentId": str(TOURNAMENT)}

    def v2RoundModelPerformances(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The model's rounds with the NMR at risk in each: its positions."""
        model_id = variables.get("modelId")
        if not any(m.id == model_id for m in self.fake.state.models.values()):
            raise GraphQLFailure(f"Model not found: {model_id}")
        rows = []
        for position in self.state.positions:
            if position.model_id != model_id:
                continue
            chain_round = self.state.rounds[position.round_number]
            rows.append({"atRisk": str(position.stake), "payoutMultipliers": [],
                         "roundPayoutFactor": "1", "roundNumber": position.round_number,
                         "roundOpenTime": _iso(chain_round.open_time),
                         "roundResolveTime": _iso(chain_round.resolve_time),
                         "roundResolved": chain_round.resolved,
                         "roundTarget": "target_ender_60", "submissionScores": []})
        return sorted(rows, key=lambda r: -r["roundNumber"])


WALLET = "0x" + "ab" * 20
"""A staker address for tests (tournament.wallet_address)."""


def _is_address(text: str) -> bool:
    return (text.startswith("0x") and len(text) == 42
            and all(c in "0123456789abcdefABCDEF" for c in text[2:]))


def _round_number(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise GraphQLFailure(f"Round not found: {value}") from None


def install(fake: FakeNumerai) -> AbsStaking:
    """Register the ABS operations on `fake` (v2 mutations refused while migrated)."""
    staking = AbsStaking(fake)
    for operation in (*V3_OPERATIONS, "v2RoundModelPerformances"):
        fake.extra_operations[operation] = getattr(staking, operation)
    for operation in V2_MUTATIONS:
        fake.extra_operations[operation] = staking.v2_mutation(operation)
    fake.authorized.update({*V3_OPERATIONS, "submissions"})
    return staking
