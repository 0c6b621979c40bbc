"""task=backtest: replay a staking policy over a finished run's per-era scores.

    python run.py task=backtest staking=sharpe_scaled run_dir=outputs/...
    python run.py task=backtest ... staking.mode=compound task.wallet=1000
    python run.py task=backtest ... payout=v2        # the legacy continuous stake

Each era of `<run_dir>/per_era.parquet` (validation eras, or a CV run's out-of-fold eras)
is one round paid by the rule of `cfg.payout`:

- `payout=abs` (the default, Atomic Blockchain Staking): `backtest.simulate_abs`, one
  position per era with the policy's per-round stake and `staking.mode`, resolving after
  `payout.resolution_eras` (null: the run's target horizon, `eras.horizon_eras`), the
  policy's caps (max_locked included) every round. With `payout.multipliers_from=api` the
  multipliers are the current round's where Numerai's API answers (one quick try), the
  config's otherwise; metrics.json says which it used.
- `payout=v2`: `backtest.simulate`, one stake that payouts compound into.

Beside it, on the same eras, the baseline: a fixed stake of `task.initial_stake` without
caps (abs: that per-round stake in fixed mode, extra payouts idle in the wallet; v2: that
stake held, payouts moved to the wallet). The NMR a run starts with is its `capital`:
abs, the wallet (`task.wallet`; null = initial_stake for every position open at once);
v2, initial_stake + wallet (null = 0). Every return is on the capital, and metrics.json
states it. Writes `backtest.parquet` (both runs, column `strategy`), `metrics.json` (flat
keys `policy_*` and `fixed_*`) and `plots/backtest.png`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, backtest, runs
from numerlab.eras import horizon_eras
from numerlab.errors import NumerlabError, message_line
from numerlab.settings import number
from numerlab.staking import (
    FIXED,
    NO_CAPS,
    VALIDATION,
    FixedStake,
    StakePolicy,
    build_policy,
)

log = logging.getLogger(__name__)

BACKTEST_FILE = "backtest.parquet"
PLOT_FILE = "backtest.png"
SUMMARY_ROWS = (("final_stake", "final stake (NMR)"), ("total_return", "total return"),
                ("worst_drawdown", "worst drawdown"), ("total_payout", "total payout (NMR)"),
                ("peak_locked", "peak NMR locked"), ("n_eras", "eras"))


def baseline_policy(initial_stake: float) -> StakePolicy:
    """The baseline: `initial_stake` wished every round, no caps, fixed mode. Built here,
    not read from conf/: the baseline is the same whatever the staking options say."""
    return FixedStake(stake=initial_stake, caps=NO_CAPS, mode=FIXED)


def baseline_label(rule: str, initial_stake: float) -> str:
    if rule == backtest.ABS_RULE:
        return f"fixed {initial_stake:g} NMR per round (fixed mode)"
    return f"fixed {initial_stake:g} NMR stake (payouts to the wallet)"


SETTINGS = ("initial_stake", "wallet")  # conf/task/backtest.yaml


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    saved = runs.finished_run(cfg, artifacts.PER_ERA, Path(run_dir))
    policy = build_policy(cfg.staking)
    if getattr(policy, "scores", VALIDATION) != VALIDATION:
        raise NumerlabError(f"task=backtest replays the run's per-era scores, not live rounds: "
                            f"staking.scores={policy.scores} is for task=stake; drop it (or "
                            f"staking.scores={VALIDATION})")
    per_era = runs.read_per_era(saved / artifacts.PER_ERA)
    rule = backtest.payout_rule(OmegaConf.to_container(cfg.payout, resolve=True))
    initial = number("task.initial_stake", cfg.task.get("initial_stake"), minimum=0)
    wallet_setting = number("task.wallet", cfg.task.get("wallet"), minimum=0, optional=True)
    label = runs.option_name(cfg, "staking")
    strategies = (("policy", policy), ("fixed", baseline_policy(initial)))
    metrics: dict[str, Any] = {"policy": label, "run_dir": str(saved), "rule": rule.rule,
                               "initial_stake": float(initial)}
    if isinstance(rule, backtest.AbsPayoutRule):
        resolution = resolution_eras(cfg, saved, rule)
        rule, source = with_multipliers(cfg, rule)
        wallet = initial * resolution if wallet_setting is None else wallet_setting
        simulated = {name: backtest.simulate_abs(per_era, chosen, rule, initial, wallet,
                                                 resolution) for name, chosen in strategies}
        metrics.update({"mode": policy.mode, "resolution_eras": resolution,
                        "multipliers_from": source})
        start = "the wallet at the start (nothing locked yet)"
    else:
        wallet = 0.0 if wallet_setting is None else wallet_setting
        simulated = {name: backtest.simulate(per_era, chosen, rule, initial, wallet)
                     for name, chosen in strategies}
        metrics["resolution_lag_eras"] = rule.resolution_lag_eras
        start = "the initial stake + the wallet at the start"
    metrics.update({"corr_mult": rule.corr_mult, "mmc_mult": rule.mmc_mult, "clip": rule.clip,
                    "payout_factor": rule.payout_factor, "wallet": float(wallet),
                    "baseline": baseline_label(rule.rule, initial)})
    summaries = {name: backtest.summary(sim) for name, sim in simulated.items()}
    capital = summaries["policy"].pop("capital")
    summaries["fixed"].pop("capital")
    metrics.update({"capital": capital,
                    "return_denominator": f"capital: {capital:g} NMR, {start}"})
    for name, values in summaries.items():
        metrics.update({f"{name}_{k}": v for k, v in values.items()})
    show(metrics, label)
    with artifacts.staged(Path(run_dir)) as stage:
        pl.concat([sim.with_columns(strategy=pl.lit(name)) for name, sim in simulated.items()]
                  ).write_parquet(stage / BACKTEST_FILE)
        backtest.plot(simulated["policy"], simulated["fixed"],
                      stage / artifacts.PLOTS_DIR / PLOT_FILE, label=label,
                      fixed_label=metrics["baseline"])
        artifacts.write_metrics(stage / artifacts.METRICS, metrics)
    return {}


def resolution_eras(cfg: DictConfig, saved: Path, rule: backtest.AbsPayoutRule) -> int:
    """`payout.resolution_eras`, or the horizon of the target the run scored (its saved
    config's, else this config's)."""
    if rule.resolution_eras is not None:
        return rule.resolution_eras
    run_cfg = runs.saved_config(cfg, saved)
    target = OmegaConf.select(run_cfg, "target.name", default=None) or cfg.target.name
    eras = horizon_eras(str(target))
    if eras < 1:
        raise NumerlabError(f"the horizon of target {target!r} is not in its name: set "
                            f"payout.resolution_eras (eras until a position resolves)")
    return eras


def with_multipliers(cfg: DictConfig, rule: backtest.AbsPayoutRule
                     ) -> tuple[backtest.AbsPayoutRule, str]:
    """The rule with the current round's CORR and MMC multipliers when
    `payout.multipliers_from=api` and Numerai's API reports both (one try, no retries: the
    backtest does not wait for the network), and where they came from."""
    import dataclasses

    if rule.multipliers_from != "api":
        return rule, "config"
    from numerlab.tournament import TournamentClient

    settings = {**OmegaConf.to_container(cfg.tournament, resolve=True), "max_attempts": 1}
    try:
        status = TournamentClient.from_config(settings).round_status()
    except NumerlabError as exc:
        log.warning("payout multipliers from the config: %s", message_line(exc))
        return rule, f"config (Numerai's API did not answer: {message_line(exc)[:120]})"
    corr, mmc = status.corr_multiplier, status.mmc_multiplier
    if corr is None or mmc is None:
        return rule, "config (Numerai's API reported no CORR and MMC multipliers)"
    round_name = (f"round {status.number}" if status.number is not None
                  else "the current round")
    return (dataclasses.replace(rule, corr_mult=float(corr), mmc_mult=float(mmc)),
            f"Numerai's API, {round_name}")


def _value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key == "n_eras":
        return str(value)
    if key in ("total_return", "worst_drawdown"):
        return f"{value:+.2%}" if key == "total_return" else f"{value:.2%}"
    return f"{value:.4f}"


def show(metrics: dict[str, Any], label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Payout backtest ({metrics['rule']}) over {metrics['policy_n_eras']} "
                        f"eras")
    table.add_column("")
    table.add_column(label, justify="right")
    table.add_column(metrics["baseline"], justify="right")
    for key, text in SUMMARY_ROWS:
        if f"policy_{key}" not in metrics:
            continue
        if key == "total_return":
            text = f"total return on {metrics['capital']:g} NMR"
        table.add_row(text, _value(key, metrics[f"policy_{key}"]),
                      _value(key, metrics[f"fixed_{key}"]))
    console.print(table)
    console.print(f"returns are on the {metrics['return_denominator']}")
    source = metrics.get("multipliers_from", "config")
    console.print(f"payout: clip({metrics['payout_factor']:g} x ({metrics['corr_mult']:g} x "
                  f"CORR + {metrics['mmc_mult']:g} x MMC), ±{metrics['clip']:g}); "
                  f"multipliers from {source}")
