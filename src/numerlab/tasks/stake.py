"""task=stake: size the stake of a Numerai model with the configured staking policy.

    python run.py task=stake staking=sharpe_scaled tournament.model_name=my_model run_dir=...
    python run.py task=stake ... tournament.execute_stake=true      # sends the change

Scores come from the finished run's `per_era.parquet` (validation eras, or a CV run's
out-of-fold eras); the current stake and the wallet from Numerai. The policy's wish goes
through `staking.propose` (the caps: max stake, max change per round, minimum left in the
wallet). Current, target, change, the cap that bound it and the reason are printed and
recorded in `stake.json`; the change is sent to Numerai only with
`tournament.execute_stake=true` and a non-zero change.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts, runs
from numerlab.errors import NumerlabError
from numerlab.settings import boolean
from numerlab.staking import Caps, StakeInputs, StakeProposal, build_policy, propose
from numerlab.tasks import _send
from numerlab.tournament import TournamentClient

log = logging.getLogger(__name__)

STAKE_FILE = "stake.json"
NMR_DECIMALS = 8  # Numerai takes NMR amounts with at most 8 decimals
CAP_TOLERANCE = 1e-9


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    saved = runs.finished_run(cfg, artifacts.PER_ERA, Path(run_dir))
    execute = boolean("tournament.execute_stake", cfg.tournament.get("execute_stake"))
    policy = build_policy(cfg.staking)
    scores = StakeInputs.from_per_era(runs.read_per_era(saved / artifacts.PER_ERA))
    model_name = cfg.tournament.get("model_name")

    client = TournamentClient.from_config(cfg.tournament)
    client.model_id(model_name)  # keys, and the model is this account's: one clear line
    current = client.stake(model_name)
    wallet = client.wallet_balance()
    available = 0.0 if wallet is None else wallet
    proposal = sendable(propose(policy, current, available, scores))
    check_within_caps(proposal, policy.caps, available)  # the amount that would be sent
    change = proposal.change

    record = {
        "model": model_name, "policy": runs.option_name(cfg, "staking"),
        "run_dir": str(saved), "current": proposal.current, "target": proposal.target,
        "change": change, "wish": proposal.wish, "capped_by": proposal.capped_by,
        "reason": proposal.reason, "wallet": wallet}
    sent = None
    if execute and change != 0:  # stake.json is written even when sending fails
        with _send.recorded(Path(run_dir), STAKE_FILE, {**record, "executed": None}):
            sent = client.change_stake(model_name, change)
    action = ("sent" if sent is not None else "no change" if change == 0
              else "dry run (tournament.execute_stake=true sends it)")
    record = {
        **record, "executed": sent is not None,
        "outcome": _send.SENT if sent is not None else "no change" if change == 0
        else _send.DRY_RUN,
        "request": None if sent is None else {
            "action": sent.action, "amount": sent.amount, "status": sent.status,
            "due_date": sent.due_date.isoformat() if sent.due_date else None},
    }
    show(record, action)
    artifacts.write_record(Path(run_dir), STAKE_FILE, record)
    return {}


def sendable(proposal: StakeProposal) -> StakeProposal:
    """The proposal with its change cut toward zero to the NMR_DECIMALS Numerai takes (a
    rounded amount never exceeds the cap the exact one keeps), the target following."""
    from decimal import ROUND_DOWN, Decimal

    change = float(Decimal(repr(proposal.change)).quantize(Decimal(1).scaleb(-NMR_DECIMALS),
                                                           rounding=ROUND_DOWN))
    return dataclasses.replace(proposal, change=change, target=proposal.current + change)


def check_within_caps(proposal: StakeProposal, caps: Caps, wallet: float) -> None:
    """NumerlabError unless the proposal keeps every cap (`staking.propose` guarantees it;
    checked again because this is what moves money): target >= 0, |change| <= max_change,
    an increase ends at or below max_stake and leaves min_wallet in the wallet."""
    change, target = proposal.change, proposal.target
    problem = None
    if not (math.isfinite(change) and math.isfinite(target)) or target < 0:
        problem = f"target stake {target!r}"
    elif caps.max_change is not None and abs(change) > caps.max_change + CAP_TOLERANCE:
        problem = f"|change| {abs(change):g} > staking.caps.max_change {caps.max_change:g}"
    elif change > 0 and caps.max_stake is not None and target > caps.max_stake + CAP_TOLERANCE:
        problem = f"target {target:g} > staking.caps.max_stake {caps.max_stake:g}"
    elif change > 0 and change > wallet - caps.min_wallet + CAP_TOLERANCE:
        problem = (f"increase {change:g} leaves less than staking.caps.min_wallet "
                   f"{caps.min_wallet:g} of the wallet's {wallet:g} NMR")
    if problem:
        raise NumerlabError(f"stake change refused, nothing sent: {problem}")


def _nmr(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def show(record: dict[str, Any], action: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Stake of {record['model']} ({record['policy']})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("current (NMR)", _nmr(record["current"]))
    table.add_row("target (NMR)", _nmr(record["target"]))
    table.add_row("change (NMR)", f"{record['change']:+.4f}")
    table.add_row("capped by", record["capped_by"] or "—")
    table.add_row("reason", record["reason"])
    table.add_row("wallet (NMR)", _nmr(record["wallet"]))
    table.add_row("action", action)
    Console().print(table)
