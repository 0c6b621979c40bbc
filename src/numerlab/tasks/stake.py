"""task=stake: size the stake of a Numerai model with the configured staking policy.

    python run.py task=stake staking=sharpe_scaled tournament.model_name=my_model run_dir=...
    python run.py task=stake ... tournament.execute_stake=true tournament.wallet_address=0x...

Scores come from the finished run's `per_era.parquet` (validation eras, or a CV run's
out-of-fold eras), or with `staking.scores=live` from the model's resolved live rounds in
the history (fetched first; each round's CORR and MMC as one era's; run_dir is not needed;
fewer than 2 resolved rounds is an error). How the plan is carried out depends on
`tournament.staking`:

- `abs` (Atomic Blockchain Staking, the default): the policy sets the per-round stake of the
  model's next position and its mode (`staking.mode`), against its current positions (the
  open rounds' stakes and on-chain state, the claims of resolved ones for
  `tournament.wallet_address`), bounded by `staking.propose_round` (max stake per round,
  max NMR locked across the open rounds, max change, min wallet; the staker wallet's
  balance is on-chain, unknown here: "wallet unknown"). No v2 mutation is ever sent. With
  `tournament.execute_stake=true` Numerai is asked for the signed authorization to stake
  on the model's newest submission (`v3StakeAuth`, max amount = the planned per-round
  stake, checked against the caps again) and `stake.json` records it with the staking
  contract's address (`v3StakeConfig`): what the wallet, or Numerai's V3 Stakes page,
  submits to open the position. numerlab holds no private key and signs nothing.
- `v2` (a tournament not migrated yet): the stake change `staking.propose` bounds, sent
  with `tournament.execute_stake=true` (numerapi's `v2ChangeStake`).

Everything is printed and recorded in `stake.json`, and the decision in the history
(`history.path`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts, live_results, runs
from numerlab.errors import NumerlabError
from numerlab.history import StakeDecision, open_history
from numerlab.settings import boolean
from numerlab.staking import (
    VALIDATION,
    WALLET_UNKNOWN,
    Caps,
    RoundStakeProposal,
    StakeInputs,
    StakePolicy,
    StakeProposal,
    build_policy,
    propose,
    propose_round,
)
from numerlab.tasks import _send
from numerlab.tournament import (
    ABS,
    AbsStakes,
    TournamentClient,
    nmr_text,
    staking_system,
    wallet_address,
)

log = logging.getLogger(__name__)

STAKE_FILE = "stake.json"
CAP_TOLERANCE = 1e-9
NO_SIGNING = ("numerlab holds no private key and signs nothing: the staker wallet (or "
              "Numerai's V3 Stakes page) submits this authorization to the staking contract "
              "to open the position")


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    policy = build_policy(cfg.staking)
    source = policy.scores  # staking.scores
    saved = (runs.finished_run(cfg, artifacts.PER_ERA, Path(run_dir)) if source == VALIDATION
             else None)
    execute = boolean("tournament.execute_stake", cfg.tournament.get("execute_stake"))
    system = staking_system(cfg.tournament)
    staker = wallet_address(cfg.tournament)
    if execute and system == ABS and staker is None:
        raise NumerlabError("tournament.execute_stake=true under tournament.staking=abs needs "
                            "tournament.wallet_address: the staker wallet (0x...) Numerai "
                            "signs the stake authorization for")
    scores = (StakeInputs.from_per_era(runs.read_per_era(saved / artifacts.PER_ERA))
              if saved is not None else None)
    model_name = cfg.tournament.get("model_name")

    client = TournamentClient.from_config(cfg.tournament)
    client.model_id(model_name)  # keys, and the model is this account's: one clear line
    store = open_history(cfg.get("history"))
    if scores is None:  # staking.scores=live: the resolved rounds, fetched into it first
        live_results.refresh_scores(client, store, [model_name])
        scores = live_results.stake_inputs(store, model_name)
    plan = plan_abs if system == ABS else plan_v2
    record = {"model": model_name, "staking": system,
              "policy": runs.option_name(cfg, "staking"), "scores": source,
              "n_eras": scores.era_count(), "run_dir": None if saved is None else str(saved)}

    def sending(fields: dict[str, Any]) -> Any:
        # stake.json is written even when what is sent fails, with its outcome
        return _send.recorded(Path(run_dir), STAKE_FILE, {**record, **fields, "executed": None})

    record.update(plan(client, policy, scores, model_name, staker, execute, sending))
    record["outcome"] = (_send.SENT if record.get("executed") else _send.DRY_RUN
                         if not execute else "no change")
    show(record)
    artifacts.write_record(Path(run_dir), STAKE_FILE, record)
    store.record_stake(decision(record))
    return {}


def decision(record: dict[str, Any]) -> StakeDecision:
    """A stake.json record as the history's stake decision."""
    proposed = record.get("per_round_stake", record.get("target"))
    return StakeDecision(model=record["model"], round=None, system=record["staking"],
                         policy=record["policy"], scores=record["scores"],
                         current=record.get("current"), proposed=proposed,
                         mode=record.get("mode"), executed=bool(record.get("executed")),
                         outcome=record["outcome"],
                         detail=json.dumps({k: record.get(k) for k in (
                             "change", "wish", "capped_by", "reason", "n_eras", "run_dir",
                             "action")}))


# --- Atomic Blockchain Staking ----------------------------------------------------------

def plan_abs(client: TournamentClient, policy: StakePolicy, scores: StakeInputs,
             model_name: str, staker: str | None, execute: bool,
             sending: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The next position's per-round stake against the current positions; with `execute`,
    Numerai's signed authorization for it."""
    stakes = AbsStakes(client)
    book = stakes.book(model_name, staker)
    # the staker's balance is on-chain, unknown to numerapi: the wallet bounds nothing
    proposal = sendable_round(propose_round(policy, book.per_round_stake, None, book.locked,
                                            scores))
    authorization = None
    if execute and proposal.stake > 0:
        check_round_within_caps(proposal, policy.caps)
        contract = stakes.contract()
        if contract.paused:
            raise NumerlabError(f"Numerai's staking contract {contract.address} is paused: "
                                f"no stake authorization asked; try again later")
        submission = stakes.latest_submission(model_name)
        with sending({"per_round_stake": proposal.stake, "staker": staker}):
            authorization = {**stakes.authorize(submission, str(staker), proposal.stake),
                             "contract": contract.address}
    action = ("authorization asked: open the position from your wallet (or Numerai's V3 "
              "Stakes page)" if authorization is not None
              else "no position to open (per-round stake 0)" if proposal.stake == 0
              else "dry run (tournament.execute_stake=true with tournament.wallet_address "
                   "asks Numerai for the authorization)")
    return {"mode": proposal.mode, "current": proposal.current,
            "per_round_stake": proposal.stake, "change": proposal.change,
            "wish": proposal.wish, "capped_by": proposal.capped_by, "reason": proposal.reason,
            "locked": proposal.locked, "locked_after": proposal.locked_after,
            "wallet": None, "wallet_note": WALLET_UNKNOWN, "staker": staker,
            **{k: v for k, v in book.record().items() if k not in ("per_round_stake",
                                                                   "locked")},
            "executed": authorization is not None, "authorization": authorization,
            "action": action, "signing": NO_SIGNING}


def sendable_round(proposal: RoundStakeProposal) -> RoundStakeProposal:
    """The per-round stake cut (never rounded up) to the 8 decimals Numerai takes."""
    stake = float(nmr_text(proposal.stake))
    return dataclasses.replace(proposal, stake=stake, change=stake - proposal.current)


def check_round_within_caps(proposal: RoundStakeProposal, caps: Caps) -> None:
    """NumerlabError unless the per-round stake keeps every cap (`staking.propose_round`
    guarantees it; checked again because this is what an authorization allows): stake >= 0,
    <= max_stake, the locked total with it <= max_locked, an increase <= max_change, and
    min_wallet left in a wallet whose balance is known (an unknown one cannot keep a
    min_wallet above 0)."""
    stake, locked, wallet = proposal.stake, proposal.locked, proposal.wallet
    problem = None
    if not math.isfinite(stake) or stake < 0:
        problem = f"per-round stake {stake!r}"
    elif caps.max_stake is not None and stake > caps.max_stake + CAP_TOLERANCE:
        problem = f"per-round stake {stake:g} > staking.caps.max_stake {caps.max_stake:g}"
    elif (caps.max_locked is not None and stake > 0
          and locked + stake > caps.max_locked + CAP_TOLERANCE):
        problem = (f"{locked:g} NMR locked + {stake:g} > staking.caps.max_locked "
                   f"{caps.max_locked:g}")
    elif caps.max_change is not None and proposal.change > caps.max_change + CAP_TOLERANCE:
        problem = (f"increase {proposal.change:g} > staking.caps.max_change "
                   f"{caps.max_change:g}")
    elif wallet is None and caps.min_wallet > 0 and stake > 0:
        problem = (f"{WALLET_UNKNOWN}, so staking.caps.min_wallet {caps.min_wallet:g} cannot "
                   f"be kept (the staker wallet's balance is on-chain); set "
                   f"staking.caps.min_wallet=0 to stake without it")
    elif wallet is not None and stake > wallet - caps.min_wallet + CAP_TOLERANCE:
        problem = (f"stake {stake:g} leaves less than staking.caps.min_wallet "
                   f"{caps.min_wallet:g} of the wallet's {wallet:g} NMR")
    if problem:
        raise NumerlabError(f"stake authorization refused, nothing asked: {problem}")


# --- the legacy continuous stake (v2) ---------------------------------------------------

def plan_v2(client: TournamentClient, policy: StakePolicy, scores: StakeInputs,
            model_name: str, staker: str | None, execute: bool,
            sending: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The change of the continuous stake; with `execute`, sent as `v2ChangeStake`."""
    current = client.stake(model_name)
    wallet = client.wallet_balance()
    proposal = sendable(propose(policy, current, wallet, scores))
    check_within_caps(proposal, policy.caps, wallet)  # the amount that would be sent
    change = proposal.change
    planned = {"current": proposal.current, "target": proposal.target, "change": change,
               "wish": proposal.wish, "capped_by": proposal.capped_by,
               "reason": proposal.reason, "wallet": wallet,
               "wallet_note": WALLET_UNKNOWN if wallet is None else None}
    sent = None
    if execute and change != 0:
        with sending(planned):
            try:
                sent = client.change_stake(model_name, change)
            except NumerlabError as exc:
                if "V2 staking mutations" not in str(exc):
                    raise
                raise NumerlabError(f"{exc} (this tournament stakes on-chain: drop "
                                    f"tournament.staking=v2)") from None
    action = ("sent" if sent is not None else "no change" if change == 0
              else "dry run (tournament.execute_stake=true sends it)")
    return {**planned, "executed": sent is not None, "action": action,
            "request": None if sent is None else {
                "action": sent.action, "amount": sent.amount, "status": sent.status,
                "due_date": sent.due_date.isoformat() if sent.due_date else None}}


def sendable(proposal: StakeProposal) -> StakeProposal:
    """The proposal with its change cut toward zero to the 8 decimals Numerai takes (a
    rounded amount never exceeds the cap the exact one keeps), the target following."""
    magnitude = float(nmr_text(abs(proposal.change)))
    change = math.copysign(magnitude, proposal.change) if magnitude else 0.0
    return dataclasses.replace(proposal, change=change, target=proposal.current + change)


def check_within_caps(proposal: StakeProposal, caps: Caps, wallet: float | None) -> None:
    """NumerlabError unless the proposal keeps every cap (`staking.propose` guarantees it;
    checked again because this is what moves money): target >= 0, |change| <= max_change,
    an increase ends at or below max_stake and leaves min_wallet in the wallet (an unknown
    wallet cannot keep a min_wallet above 0)."""
    change, target = proposal.change, proposal.target
    problem = None
    if not (math.isfinite(change) and math.isfinite(target)) or target < 0:
        problem = f"target stake {target!r}"
    elif caps.max_change is not None and abs(change) > caps.max_change + CAP_TOLERANCE:
        problem = f"|change| {abs(change):g} > staking.caps.max_change {caps.max_change:g}"
    elif change > 0 and caps.max_stake is not None and target > caps.max_stake + CAP_TOLERANCE:
        problem = f"target {target:g} > staking.caps.max_stake {caps.max_stake:g}"
    elif change > 0 and wallet is None and caps.min_wallet > 0:
        problem = (f"{WALLET_UNKNOWN}, so staking.caps.min_wallet {caps.min_wallet:g} cannot "
                   f"be kept")
    elif change > 0 and wallet is not None and change > wallet - caps.min_wallet + CAP_TOLERANCE:
        problem = (f"increase {change:g} leaves less than staking.caps.min_wallet "
                   f"{caps.min_wallet:g} of the wallet's {wallet:g} NMR")
    if problem:
        raise NumerlabError(f"stake change refused, nothing sent: {problem}")


# --- showing it -------------------------------------------------------------------------

def _nmr(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def show(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Stake of {record['model']} ({record['policy']}, "
                        f"{record['staking']})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    wallet = record["wallet_note"] or _nmr(record["wallet"])
    if record["staking"] == ABS:
        table.add_row("per-round stake now (NMR)", _nmr(record["current"]))
        table.add_row("next per-round stake (NMR)", _nmr(record["per_round_stake"]))
        table.add_row("change (NMR)", f"{record['change']:+.4f}")
        table.add_row("mode", record["mode"])
        table.add_row("locked now / with it (NMR)",
                      f"{record['locked']:.4f} / {record['locked_after']:.4f}")
        table.add_row("open positions", str(len(record["positions"])))
        table.add_row("claimable (NMR)", "set tournament.wallet_address"
                      if record["claimable"] is None else _nmr(record["claimable"]))
    else:
        table.add_row("current (NMR)", _nmr(record["current"]))
        table.add_row("target (NMR)", _nmr(record["target"]))
        table.add_row("change (NMR)", f"{record['change']:+.4f}")
    table.add_row("capped by", record["capped_by"] or "—")
    table.add_row("reason", record["reason"])
    table.add_row("wallet (NMR)", wallet)
    table.add_row("action", record["action"])
    console.print(table)
    if record["staking"] == ABS and record["positions"]:
        positions = Table(title="Open positions")
        for column in ("round", "stake (NMR)", "state", "resolves"):
            positions.add_column(column)
        for p in record["positions"]:
            positions.add_row(str(p["round"]), f"{p['stake']:.4f}", p["state"] or "—",
                              p["resolve_time"] or "—")
        console.print(positions)
    if record.get("authorization"):
        console.print(f"authorization for contract {record['authorization']['contract']} "
                      f"written to {STAKE_FILE}; {NO_SIGNING}")
