"""task=results: the live scores of your Numerai models against the validation of the runs
that made their submissions.

    python run.py task=results                          # submit.models + the history's models
    python run.py task=results 'results.models=[my_model]' results.export=csv

With the API keys it first fetches what is new into the history (`history.path`): each
model's live scores (`submissionScores`) and, under `tournament.staking=abs`, its positions
(with the payouts of `tournament.wallet_address`'s claims); one line says how many scores
are new. Without keys it works from the history alone and says so. Then, per model: the
resolved rounds' CORR mean / sharpe / max drawdown, MMC mean / sharpe and BMC mean beside
the same keys of the run's metrics.json (the run of the model's newest submission), the
flags (`live_results.FLAG_RULE`), the rounds still pending, and a plot of the cumulative
live CORR and MMC with validation's expectation (mean × rounds, ± 2 std × √rounds) in
`plots/live_<model>.png`. `results.json` records it all; `results.export=parquet|csv`
writes the history's tables into `history/` of the job dir.

Notifications (`notify`), after a refresh: each round newly resolved -> `round_resolved`
(a model's first fetch, its past, sends none); a model flagged now and not before ->
`live_out_of_range`; each delivery is recorded in the history.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from numerlab import artifacts, live_results
from numerlab.errors import NumerlabError
from numerlab.history import History, open_history
from numerlab.settings import choice, keys
from numerlab.summary import format_number
from numerlab.tournament import ABS, TournamentClient, staking_system, wallet_address

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EXPORT_DIR = "history"
EXPORT_FORMATS = (None, "parquet", "csv")
SETTINGS = ("models", "export")
ROWS = (("n", "resolved rounds"), ("corr_mean", "CORR mean"), ("corr_sharpe", "CORR sharpe"),
        ("corr_max_drawdown", "CORR max drawdown"), ("mmc_mean", "MMC mean"),
        ("mmc_sharpe", "MMC sharpe"), ("bmc_mean", "BMC mean"))


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    job_dir = Path(run_dir)
    settings = cfg.get("results") or {}
    keys("results", settings, SETTINGS)
    export = choice("results.export", settings.get("export"), EXPORT_FORMATS)
    store = open_history(cfg.get("history"))
    models = chosen_models(cfg, store)
    client = TournamentClient.from_config(cfg.tournament)
    before = Before.of(store, models)

    record: dict[str, Any] = {"models": models, "rule": live_results.FLAG_RULE}
    if client.has_keys:
        record.update(refresh(cfg, client, store, models))
        print(f"refreshed from Numerai: {record['new_scores']} new live scores, "
              f"{record['positions'] if record['positions'] is not None else 'no'} positions")
    else:
        record.update({"refreshed": False, "new_scores": None, "positions": None})
        print(f"not refreshed: no Numerai API keys ({client.keys_hint}); the history "
              f"{store.path} alone")

    views = live_results.live_vs_validation(store, models)
    rounds = {m: live_results.per_round(store, m) for m in models}
    plots = {v.model: plot_model(v, rounds[v.model], job_dir) for v in views}
    show(views, rounds)
    deliveries = notify(cfg, store, views, rounds, before) if record["refreshed"] else []
    record["models"] = [{**asdict(v), "plot": plots[v.model],
                         "rounds": rounds[v.model].to_dicts()} for v in views]
    record["notifications"] = [{"event": d.event, "target": d.target, "ok": d.ok}
                               for d in deliveries]
    record["exported"] = ([str(p) for p in store.export(job_dir / EXPORT_DIR, export)]
                          if export else [])
    artifacts.write_record(job_dir, RESULTS_FILE, record)
    return {}


# --- which models ---------------------------------------------------------------------------

def _names(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | ListConfig) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise NumerlabError(f"{key}={value!r} must be a list of Numerai model names")
    return [str(v) for v in value]


def chosen_models(cfg: DictConfig, store: History) -> list[str]:
    """`results.models`, else the keys of `submit.models` and every model the history has
    submissions or scores of; a one-line error when there is none."""
    chosen = (cfg.get("results") or {}).get("models")
    if chosen is not None:
        models = _names("results.models", chosen)
    else:
        configured = OmegaConf.select(cfg, "submit.models", default=None) or {}
        models = sorted({*map(str, configured), *live_results.models_in(store)})
    if not models:
        raise NumerlabError(f"task=results has no model to show: set submit.models or "
                            f"results.models=[...] (the history {store.path} has none)")
    return models


# --- fetching -------------------------------------------------------------------------------

def refresh(cfg: DictConfig, client: TournamentClient, store: History,
            models: list[str]) -> dict[str, Any]:
    """New live scores and (ABS) positions into the history."""
    new = live_results.refresh_scores(client, store, models)
    positions = None
    if staking_system(cfg.tournament) == ABS:
        positions = live_results.refresh_positions(client, store, models,
                                                   wallet_address(cfg.tournament))
    return {"refreshed": True, "new_scores": len(new), "positions": positions}


# --- notifications --------------------------------------------------------------------------

def _score_text(row: dict[str, Any]) -> str:
    parts = [f"{label} {row[m]:+.4f}" for m, label in live_results.LABELS.items()
             if row.get(m) is not None]
    return f"round {row['round']}: " + (", ".join(parts) or "no score")


@dataclass(frozen=True)
class Before:
    """What the history held before the refresh: per model, the rounds it knew and those
    resolved, and its flags."""

    known: dict[str, int]
    resolved: dict[str, set[int]]
    flagged: dict[str, bool]

    @classmethod
    def of(cls, store: History, models: list[str]) -> Before:
        frames = {m: live_results.per_round(store, m) for m in models}
        views = live_results.live_vs_validation(store, models)
        return cls(known={m: f.height for m, f in frames.items()},
                   resolved={m: set(live_results.resolved_rounds(f)["round"].to_list())
                             for m, f in frames.items()},
                   flagged={v.model: bool(v.flags) for v in views})


def notify(cfg: DictConfig, store: History, views: list[live_results.LiveVsValidation],
           rounds: dict[str, Any], before: Before) -> list[Any]:
    """`round_resolved` for each round this refresh found resolved (not for a model's first
    fetch: that is the past, not news), `live_out_of_range` for a model flagged now and not
    before; every delivery recorded in the history."""
    from numerlab.notify import Notifier, message_round_resolved

    notifier = Notifier.for_run(cfg)
    if not notifier.enabled:
        return []
    payouts: dict[tuple[str, int], float] = {}
    for position in store.positions():
        if position.payout is not None:
            key = (position.model, position.round)
            payouts[key] = payouts.get(key, 0.0) + position.payout
    deliveries: list[Any] = []
    for view in views:
        if before.known.get(view.model):
            for row in live_results.resolved_rounds(rounds[view.model]).to_dicts():
                if row["round"] in before.resolved[view.model]:
                    continue
                scores = {label: row[m] for m, label in live_results.LABELS.items()
                          if row[m] is not None}
                deliveries += notifier.send(*message_round_resolved(
                    view.model, row["round"], scores, payouts.get((view.model, row["round"]))))
        if view.flags and not before.flagged.get(view.model):
            deliveries += notifier.send(
                "live_out_of_range", f"numerlab: {view.model} live outside validation's range",
                "\n".join([*view.flags, f"run: {view.run_dir}",
                           f"rule: {live_results.FLAG_RULE}"]))
    for delivery in deliveries:
        store.record_notification(delivery)
    return deliveries


# --- showing it -----------------------------------------------------------------------------


def show(views: list[live_results.LiveVsValidation], rounds: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for view in views:
        table = Table(title=f"{view.model}: live vs validation", header_style="bold")
        table.add_column("metric")
        table.add_column("live", justify="right")
        table.add_column("validation", justify="right")
        for key, label in ROWS:
            live = view.n_rounds if key == "n" else view.live.get(key)
            table.add_row(label, format_number(live),
                          "" if key == "n" else format_number(view.validation[key]))
        console.print(table)
        console.print(f"run: {view.run_dir or 'none in the history (no submission sent)'}",
                      soft_wrap=True)
        waiting = rounds[view.model].filter(~rounds[view.model]["resolved"]).to_dicts()
        if waiting:
            console.print("pending: " + "; ".join(_score_text(r) for r in waiting),
                          soft_wrap=True)
        for flag in view.flags:
            console.print(f"[bold red]flag[/]: {flag}", soft_wrap=True)
        if not view.flags and view.n_rounds:
            console.print("no flag: live within what validation suggested")
    console.print(f"flag rule: {live_results.FLAG_RULE}", soft_wrap=True)


def _file_name(model: str) -> str:
    return "live_" + re.sub(r"[^A-Za-z0-9_.-]", "_", model) + ".png"


def plot_model(view: live_results.LiveVsValidation, frame: Any, job_dir: Path) -> str | None:
    """Cumulative live CORR (and MMC) of the resolved rounds, with validation's expectation
    beside each: mean × k after k rounds, shaded ± 2 std × √k. None without resolved rounds."""
    import numpy as np

    from numerlab.report import era_axis, pyplot

    resolved = live_results.resolved_rounds(frame)
    if not resolved.height:
        return None
    plt = pyplot()
    metrics_json = live_results.validation_metrics(view.run_dir)
    x = np.arange(resolved.height)
    k = x + 1
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for metric, color in (("corr", "tab:blue"), ("mmc", "tab:orange")):
        if resolved[metric].is_null().all():
            continue
        label = live_results.LABELS[metric]
        ax.plot(x, resolved[f"cum_{metric}"].to_numpy(), color=color, label=f"live {label}")
        mean, std = metrics_json.get(f"{metric}_mean"), metrics_json.get(f"{metric}_std")
        if mean is not None:
            ax.plot(x, mean * k, color=color, linestyle="--",
                    label=f"validation {label} mean × rounds")
            if std is not None:
                ax.fill_between(x, mean * k - 2 * std * np.sqrt(k),
                                mean * k + 2 * std * np.sqrt(k), color=color, alpha=0.12)
    era_axis(ax, x, [str(r) for r in resolved["round"].to_list()], "cumulative score",
             f"{view.model}: live rounds against validation")
    ax.set_xlabel("round")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = job_dir / "plots" / _file_name(view.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_file(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return str(out)
