"""task=status: where the Numerai tournament stands now (UTC), and the account's stakes.

Prints the current round (number, open or closed, close time and time left), when the next
one opens, the payout factor and multipliers as the API reports them and, with API keys,
the account's models with their stakes and the wallet; writes `status.json` in the job dir.
Under Atomic Blockchain Staking (`tournament.staking=abs`, the default) a model's stake is
its open positions: the per-round stake (the newest position's), how many rounds are open
and the NMR locked in them, each round's on-chain state, and what is claimable from
resolved rounds for `tournament.wallet_address`. Under `v2`, the continuous stake.
Without keys the round is still shown (those calls need no account) and the models part
says which environment variables to set.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts
from numerlab.tournament import (
    ABS,
    TIME_FORMAT,
    AbsStakes,
    TournamentClient,
    duration,
    staking_system,
    wallet_address,
)

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    system = staking_system(cfg.tournament)
    staker = wallet_address(cfg.tournament)
    client = TournamentClient.from_config(cfg.tournament)
    status = client.round_status()
    record = {**round_record(status), "staking": system}
    if client.has_keys:
        record.update(account_record(client) if system != ABS
                      else abs_account_record(client, staker))
    else:
        record.update({"keys": False, "models": None, "wallet_nmr": None,
                       "note": f"no Numerai API keys: set {client.keys_hint}"})
    show(record)
    with artifacts.staged(Path(run_dir)) as stage:
        artifacts.write_metrics(stage / STATUS_FILE, record)
    return {}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def round_record(status: Any) -> dict[str, Any]:
    """The round part of status.json, from a `tournament.RoundStatus`."""
    left = status.time_left
    return {
        "time": _iso(status.now),
        "round": status.number,
        "is_open": status.is_open,
        "open_time": _iso(status.open_time),
        "close_time": _iso(status.close_time),
        "time_left_s": left.total_seconds() if left is not None else None,
        "next_open_time": _iso(status.next_open_time),
        "payout_factor": status.payout_factor,
        "payout_multipliers": {s.name: s.multiplier for s in status.payout_scores},
        "times_from": status.source,  # "api", or "rule": the weekday schedule filled in
    }


def account_record(client: Any) -> dict[str, Any]:
    """The account part of status.json: models (name -> id, stake NMR) and the wallet."""
    models = client.models()
    return {"keys": True,
            "models": {name: {"id": model_id, "stake": client.stake(name)}
                       for name, model_id in sorted(models.items())},
            "wallet_nmr": client.wallet_balance()}


def abs_account_record(client: Any, staker: str | None) -> dict[str, Any]:
    """The account part of status.json under ABS: each model's positions (per-round stake,
    locked, open rounds with their on-chain state, claims for `staker`) and the legacy
    Numerai wallet (which no longer funds stakes)."""
    stakes = AbsStakes(client)
    models = client.models()
    return {"keys": True, "staker": staker,
            "models": {name: {"id": model_id, **stakes.book(name, staker).record()}
                       for name, model_id in sorted(models.items())},
            "wallet_nmr": client.wallet_balance()}


def _when(text: str | None) -> str:
    return datetime.fromisoformat(text).strftime(TIME_FORMAT) if text else "—"


def _left(seconds: float | None) -> str:
    return duration(None if seconds is None else timedelta(seconds=seconds), unknown="—")


def show(record: dict[str, Any]) -> None:
    """The round table, then the models table (or why there is none)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rounds = Table(title="Numerai round (UTC)", show_header=False)
    rounds.add_column("what")
    rounds.add_column("value")
    number = record["round"] if record["round"] is not None else "?"
    rounds.add_row("round", str(number))
    rounds.add_row("status", "open" if record["is_open"] else "closed")
    rounds.add_row("opened", _when(record["open_time"]))
    rounds.add_row("closes" if record["is_open"] else "closed", _when(record["close_time"]))
    rounds.add_row("time left", _left(record["time_left_s"]))
    rounds.add_row("next round opens", _when(record["next_open_time"]))
    if record["payout_factor"] is not None:
        rounds.add_row("payout factor", f"{record['payout_factor']:g}")
    for name, multiplier in record["payout_multipliers"].items():
        rounds.add_row(f"payout multiplier {name}", str(multiplier))
    if record["times_from"] == "rule":
        rounds.add_row("note", "Numerai gave no round times: weekday schedule")
    console.print(rounds)
    if not record["keys"]:
        console.print(record["note"])
        return
    if record["staking"] == ABS:
        show_positions(console, record)
    else:
        models = Table(title="Models")
        models.add_column("model")
        models.add_column("stake (NMR)", justify="right")
        for name, model in record["models"].items():
            models.add_row(name, f"{model['stake']:.4f}")
        console.print(models)
    wallet = record["wallet_nmr"]
    where = ("Numerai wallet (no longer funds ABS stakes)" if record["staking"] == ABS
             else "wallet")
    console.print(f"{where}: {wallet:.4f} NMR available" if wallet is not None
                  else f"{where}: wallet unknown")


def show_positions(console: Any, record: dict[str, Any]) -> None:
    """ABS: one row per model, then each open position."""
    from rich.table import Table

    models = Table(title="Models (Atomic Blockchain Staking)")
    for column in ("model", "per-round stake", "open rounds", "locked (NMR)",
                   "claimable (NMR)"):
        models.add_column(column, justify="left" if column == "model" else "right")
    for name, model in record["models"].items():
        claimable = ("set tournament.wallet_address" if model["claimable"] is None
                     else f"{model['claimable']:.4f}")
        models.add_row(name, f"{model['per_round_stake']:.4f}", str(len(model["positions"])),
                       f"{model['locked']:.4f}", claimable)
    console.print(models)
    for name, model in record["models"].items():
        if not model["positions"]:
            continue
        positions = Table(title=f"Open positions of {name}")
        for column in ("round", "stake (NMR)", "state", "resolves"):
            positions.add_column(column)
        for p in model["positions"]:
            positions.add_row(str(p["round"]), f"{p['stake']:.4f}", p["state"] or "—",
                              _when(p["resolve_time"]))
        console.print(positions)
