"""Live results: the scores Numerai reports per round, kept in the history, next to the
validation numbers of the run that made the submissions.

- `refresh_scores` fetches each model's live scores (`tournament.scores`) into the
  history; `refresh_positions` its ABS positions and, for a staker, its claims' payouts.
- `per_round` is one row per round: CORR, MMC, BMC (Numerai's display names mapped once,
  `tournament.scores.SCORE_NAMES`), resolved or not, and the cumulative sums of the
  resolved rounds.
- `live_vs_validation` summarizes the resolved rounds with the very function that
  summarizes validation eras (`scoring.summarize`: mean, sharpe = mean / std with ddof 0,
  max drawdown of the cumulative sum from its running peak), beside the run's metrics.json,
  and flags what lies outside what validation suggested (`FLAG_RULE`).

Only resolved rounds count; a round still scoring is pending (its latest day is shown,
never summarized). Numerai's daily rounds overlap (a 20-day target), so neighbouring rounds
are correlated and the range below is a lower bound on the real spread: a flag asks for a
look, not for action.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from numerlab.errors import NumerlabError
from numerlab.history import SENT, SKIPPED, UNKNOWN, History, PositionRow, Score
from numerlab.report import running_sum
from numerlab.scoring import summarize
from numerlab.staking import MIN_LIVE_ROUNDS, StakeInputs
from numerlab.tournament.scores import METRICS, live_scores, metric_of, preference

if TYPE_CHECKING:
    from numerlab.tournament.client import TournamentClient

LIVE_KEYS = ("corr_mean", "corr_sharpe", "corr_max_drawdown", "mmc_mean", "mmc_sharpe",
             "bmc_mean")
SE_WIDTH = 2.0  # the validation range: mean +/- SE_WIDTH standard errors
FLAG_RULE = ("a live mean (CORR, MMC) is flagged when it lies outside the validation mean "
             "± 2 × validation per-era std / √n for its n resolved rounds, and live CORR when "
             "its max drawdown exceeds validation's")
# a submission whose predictions reached Numerai (its run made the live scores)
LIVE_STATUSES = frozenset({SENT, SKIPPED, UNKNOWN})
LABELS = {"corr": "CORR", "mmc": "MMC", "bmc": "BMC"}


@dataclass(frozen=True)
class LiveVsValidation:
    model: str
    run_dir: str | None        # the run that made the model's newest submission (history)
    n_rounds: int              # resolved rounds counted in `live`
    live: dict[str, float | None]        # LIVE_KEYS over the resolved rounds
    validation: dict[str, float | None]  # the same keys from that run's metrics.json
    flags: list[str]           # plain lines, e.g. "live CORR mean -0.0120 ... is below ..."
    pending: int = 0           # rounds still scoring (not in `live`)


# --- fetching -----------------------------------------------------------------------------

def refresh_scores(client: TournamentClient, store: History, models: Iterable[str]
                   ) -> list[Score]:
    """Fetch the live scores of `models` into the history; the new or changed ones (a
    second refresh with nothing new from Numerai returns [])."""
    changed: list[Score] = []
    for model in models:
        changed.extend(store.upsert_scores(live_scores(client, model)))
    return changed


def refresh_positions(client: TournamentClient, store: History, models: Iterable[str],
                      staker: str | None = None) -> int:
    """Store the ABS positions of `models` (NMR at risk per round) with, for `staker`, the
    net payout (payout - burn) of those Numerai still has claims for; how many rows."""
    from numerlab.tournament.stakes import AbsStakes

    stakes = AbsStakes(client)
    rows: list[PositionRow] = []
    for model in models:
        positions = stakes.positions(model)
        claims = ({c.round: c for c in stakes.claims(model, staker, positions)}
                  if staker else {})
        for position in positions:
            claim = claims.get(position.round)
            rows.append(PositionRow(
                model=model, round=position.round, staker=staker or "",
                stake=position.stake, resolved=position.resolved,
                payout=None if claim is None else claim.payout - claim.burn))
    store.upsert_positions(rows)
    return len(rows)


# --- per round ----------------------------------------------------------------------------

def per_round(store: History, model: str) -> pl.DataFrame:
    """One row per round of `model`, oldest first: round, corr, mmc, bmc (the preferred
    display name of each metric; null where Numerai reports none), resolved (every score of
    the round is), and cum_corr, cum_mmc, cum_bmc: running sums over the resolved rounds
    (`report.running_sum`: null before a metric's first known round and on pending rounds;
    an unknown score adds 0)."""
    rounds: dict[int, dict[str, Any]] = {}
    for score in sorted(store.scores(model=model), key=lambda s: -preference(s.name)):
        metric = metric_of(score.name)
        if metric is None:
            continue
        row = rounds.setdefault(score.round, {"round": score.round, "resolved": True})
        row[metric] = score.value  # the preferred name comes last and wins
        row["resolved"] = row["resolved"] and score.resolved
    schema = {"round": pl.Int64, **{m: pl.Float64 for m in METRICS}, "resolved": pl.Boolean}
    frame = pl.DataFrame([{**{m: None for m in METRICS}, **r} for r in rounds.values()],
                         schema=schema).sort("round")
    resolved = frame["resolved"].to_numpy().astype(bool)
    cumulative = []
    for metric in METRICS:
        values = np.where(resolved, frame[metric].fill_null(np.nan).to_numpy(), np.nan)
        cumulative.append(pl.Series(f"cum_{metric}", running_sum(values), dtype=pl.Float64)
                          .fill_nan(None).scatter(np.flatnonzero(~resolved), None))
    return frame.with_columns(cumulative)


def resolved_rounds(frame: pl.DataFrame) -> pl.DataFrame:
    """The resolved rows of a `per_round` frame."""
    return frame.filter(pl.col("resolved"))


def live_summary(frame: pl.DataFrame) -> dict[str, Any]:
    """`scoring.summarize` of the resolved rounds (rounds as eras, in round order)."""
    resolved = resolved_rounds(frame)
    per_era = resolved.select(pl.col("round").cast(pl.String).alias("era"), *METRICS)
    return summarize(per_era, None)


# --- against validation -------------------------------------------------------------------

def submitting_run(store: History, model: str) -> str | None:
    """The run dir of the model's newest submission that reached Numerai."""
    for submission in reversed(store.submissions(model=model)):
        if submission.status in LIVE_STATUSES and submission.run_dir:
            return submission.run_dir
    return None


def validation_metrics(run_dir: str | None) -> dict[str, Any]:
    """The numeric metrics.json entries of a run dir (numerlab.summary's reader); {}
    without a run or its metrics.json."""
    from numerlab.summary import run_record

    if run_dir is None or not (Path(run_dir) / "metrics.json").is_file():
        return {}
    return run_record(Path(run_dir), Path(run_dir))["metrics"]


def mean_range(mean: float | None, std: float | None, n: int) -> tuple[float, float] | None:
    """mean +/- SE_WIDTH * std / sqrt(n): where the mean of n rounds drawn like the
    validation eras falls about 95% of the time; None when undefined."""
    if mean is None or std is None or n < 1 or not (math.isfinite(mean) and math.isfinite(std)):
        return None
    half = SE_WIDTH * std / math.sqrt(n)
    return mean - half, mean + half


def flags_of(live: dict[str, Any], validation: dict[str, Any], counts: dict[str, int]
             ) -> list[str]:
    """The FLAG_RULE lines for one model (live: `live_summary`; validation: metrics.json;
    counts: resolved rounds with each metric)."""
    flags = []
    for metric in ("corr", "mmc"):
        mean, n = live.get(f"{metric}_mean"), counts.get(metric, 0)
        bounds = mean_range(validation.get(f"{metric}_mean"), validation.get(f"{metric}_std"),
                            n)
        if mean is None or bounds is None or bounds[0] <= mean <= bounds[1]:
            continue
        side = "below" if mean < bounds[0] else "above"
        flags.append(f"live {LABELS[metric]} mean {mean:+.4f} over {n} resolved rounds is "
                     f"{side} the validation range [{bounds[0]:+.4f}, {bounds[1]:+.4f}]")
    live_dd, val_dd = live.get("corr_max_drawdown"), validation.get("corr_max_drawdown")
    if live_dd is not None and val_dd is not None and live_dd > val_dd:
        flags.append(f"live CORR max drawdown {live_dd:.4f} exceeds validation's "
                     f"{val_dd:.4f}")
    return flags


def models_in(store: History) -> list[str]:
    """Every model the history has scores or submissions of."""
    return sorted({s.model for s in store.scores()} | {s.model for s in store.submissions()})


def compare_model(store: History, model: str) -> LiveVsValidation:
    frame = per_round(store, model)
    resolved = resolved_rounds(frame)
    n = resolved.height
    live = live_summary(frame) if n else {}
    counts = {m: int(resolved[m].is_not_null().sum()) for m in METRICS}
    run_dir = submitting_run(store, model)
    validation = validation_metrics(run_dir)
    return LiveVsValidation(
        model=model, run_dir=run_dir, n_rounds=n,
        live={k: live.get(k) for k in LIVE_KEYS},
        validation={k: validation.get(k) for k in LIVE_KEYS},
        flags=flags_of(live, validation, counts), pending=frame.height - n)


def live_vs_validation(store: History, models: Iterable[str] | None = None
                       ) -> list[LiveVsValidation]:
    """Live against validation for `models` (None: every model in the history)."""
    return [compare_model(store, m) for m in (models_in(store) if models is None else models)]


# --- for staking ----------------------------------------------------------------------------

def stake_inputs(store: History, model: str) -> StakeInputs:
    """The resolved live rounds of `model` as a staking policy's per-era scores
    (`staking.scores=live`): one round as one era, CORR and MMC, oldest first. A one-line
    error with fewer than `staking.MIN_LIVE_ROUNDS` resolved rounds."""
    resolved = resolved_rounds(per_round(store, model))
    if resolved.height < MIN_LIVE_ROUNDS:
        raise NumerlabError(
            f"staking.scores=live: model {model!r} has {resolved.height} resolved live "
            f"round(s) in the history {store.path}, fewer than {MIN_LIVE_ROUNDS}; run "
            f"task=results with the API keys to fetch them, or use staking.scores=validation")
    return StakeInputs.from_per_era(resolved.select("corr", "mmc"))
