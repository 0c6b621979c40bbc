"""task=backtest: replay a staking policy over a finished run's per-era scores.

    python run.py task=backtest staking=sharpe_scaled run_dir=outputs/...

Each era of `<run_dir>/per_era.parquet` (validation eras, or a CV run's out-of-fold eras)
is one round paid by the payout rule of `cfg.payout` (`backtest.simulate`: compounding,
scores resolving after `payout.resolution_lag_eras`, the policy's caps every round). Beside
it, on the same eras, a fixed stake: `NoStake` without caps (what `staking=none` builds)
holding `task.initial_stake`. Writes `backtest.parquet` (both runs, column `strategy`),
`metrics.json` (flat keys `policy_*` and `fixed_*`) and `plots/backtest.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, backtest, runs
from numerlab.settings import number
from numerlab.staking import FIXED, NO_CAPS, NoStake, StakePolicy, build_policy

BACKTEST_FILE = "backtest.parquet"
PLOT_FILE = "backtest.png"
SUMMARY_ROWS = (("final_stake", "final stake (NMR)"), ("total_return", "total return"),
                ("worst_drawdown", "worst drawdown"), ("total_payout", "total payout (NMR)"),
                ("n_eras", "eras"))


def fixed_policy() -> StakePolicy:
    """The baseline: no policy and no caps, so with compounding a stake left where it
    started. Built here, not read from conf/: the baseline is the same whatever the
    staking options say."""
    return NoStake(caps=NO_CAPS, mode=FIXED)


SETTINGS = ("initial_stake", "wallet")  # conf/task/backtest.yaml


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    saved = runs.finished_run(cfg, artifacts.PER_ERA, Path(run_dir))
    policy = build_policy(cfg.staking)
    per_era = runs.read_per_era(saved / artifacts.PER_ERA)
    payout = OmegaConf.to_container(cfg.payout, resolve=True)
    initial = number("task.initial_stake", cfg.task.get("initial_stake"), minimum=0)
    wallet = number("task.wallet", cfg.task.get("wallet"), minimum=0)
    simulated = {name: backtest.simulate(per_era, chosen, payout, initial, wallet)
                 for name, chosen in (("policy", policy), ("fixed", fixed_policy()))}
    label = runs.option_name(cfg, "staking")
    metrics: dict[str, Any] = {"policy": label, "run_dir": str(saved),
                               "initial_stake": float(initial), "wallet": float(wallet)}
    for name, sim in simulated.items():
        metrics.update({f"{name}_{k}": v for k, v in backtest.summary(sim).items()})
    show(metrics, label, float(initial))
    with artifacts.staged(Path(run_dir)) as stage:
        pl.concat([sim.with_columns(strategy=pl.lit(name)) for name, sim in simulated.items()]
                  ).write_parquet(stage / BACKTEST_FILE)
        backtest.plot(simulated["policy"], simulated["fixed"],
                      stage / artifacts.PLOTS_DIR / PLOT_FILE, label=label,
                      fixed_label=f"fixed {float(initial):g} NMR")
        artifacts.write_metrics(stage / artifacts.METRICS, metrics)
    return {}


def _value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "n_eras":
        return str(value)
    if key in ("total_return", "worst_drawdown"):
        return f"{value:+.2%}" if key == "total_return" else f"{value:.2%}"
    return f"{value:.4f}"


def show(metrics: dict[str, Any], label: str, initial: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Payout backtest over {metrics['policy_n_eras']} eras")
    table.add_column("")
    table.add_column(label, justify="right")
    table.add_column(f"fixed {initial:g} NMR", justify="right")
    for key, text in SUMMARY_ROWS:
        table.add_row(text, _value(key, metrics[f"policy_{key}"]),
                      _value(key, metrics[f"fixed_{key}"]))
    Console().print(table)
