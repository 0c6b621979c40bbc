"""Payout backtest: replay a staking policy over per-era scores, round by round.

Payout of one round (Numerai's rule, multipliers from `conf/payout/`):

    payout = stake * clip(payout_factor * (corr_mult * CORR + mmc_mult * MMC), -clip, +clip)

An era with no MMC (null/NaN, e.g. no meta model for it) pays on CORR alone: its MMC
counts 0. Each era is one round. Scores resolve ~20 trading days after a round, so with
lag = resolution_lag_eras:

- round t's policy sees only the scores of eras < t - lag (no lookahead);
- era t's payout reaches the stake (compounding) at round t + lag + 1, so nothing about
  era t can change a stake before then;
- a stake increase is paid from the wallet, a decrease goes back to it (releases are
  immediate here; Numerai delays them). A resolved loss larger than the stake left is taken
  from the wallet, and no further (holdings never go negative).

Pure: numpy and polars; matplotlib is imported inside `plot`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from numerlab.eras import in_era_order
from numerlab.errors import NumerlabError
from numerlab.settings import integer, keys, number, required
from numerlab.staking import StakeInputs, StakePolicy, propose

PAYOUT_PREFIX = "payout"


@dataclass(frozen=True)
class PayoutRule:
    """The payout multipliers and clip of `conf/payout/`, and how many eras scores take to
    resolve."""

    corr_mult: float
    mmc_mult: float
    clip: float
    payout_factor: float
    resolution_lag_eras: int

    @classmethod
    def from_config(cls, cfg: PayoutRule | Mapping[str, Any]) -> PayoutRule:
        """From the `payout` mapping: exactly the fields of PayoutRule; multipliers and
        factor >= 0, clip in [0, 1], resolution_lag_eras an integer >= 0."""
        if isinstance(cfg, PayoutRule):
            return cfg
        names = [f.name for f in fields(cls)]
        if not isinstance(cfg, Mapping):
            raise NumerlabError(f"{PAYOUT_PREFIX}={cfg!r} must be a mapping with keys "
                                f"{', '.join(names)}")
        keys(PAYOUT_PREFIX, cfg, names)
        required(PAYOUT_PREFIX, cfg, names)

        def value(key: str, **bounds: Any) -> float:
            return number(f"{PAYOUT_PREFIX}.{key}", cfg[key], **bounds)

        return cls(corr_mult=value("corr_mult", minimum=0),
                   mmc_mult=value("mmc_mult", minimum=0),
                   clip=value("clip", minimum=0, maximum=1),
                   payout_factor=value("payout_factor", minimum=0),
                   resolution_lag_eras=lag_eras(cfg["resolution_lag_eras"]))


def lag_eras(value: Any) -> int:
    """`payout.resolution_lag_eras` checked: an integer >= 0."""
    return integer(f"{PAYOUT_PREFIX}.resolution_lag_eras", value, minimum=0)


def payout_score(corr: np.ndarray, mmc: np.ndarray, rule: PayoutRule) -> np.ndarray:
    """Per-era payout as a fraction of the stake:
    clip(payout_factor * (corr_mult * CORR + mmc_mult * MMC), -clip, +clip), NaN MMC = 0."""
    mmc = np.nan_to_num(np.asarray(mmc, dtype=np.float64), nan=0.0)
    raw = rule.payout_factor * (rule.corr_mult * np.asarray(corr, dtype=np.float64)
                                + rule.mmc_mult * mmc)
    return np.clip(raw, -rule.clip, rule.clip)


# --- per-era input ------------------------------------------------------------------------


def _era_scores(per_era: Any) -> tuple[list, np.ndarray, np.ndarray]:
    """Eras (sorted), CORR and MMC (null -> NaN) of a per-era table; CORR must be known."""
    frame = per_era if isinstance(per_era, pl.DataFrame) else pl.from_pandas(per_era)
    for column in ("era", "corr"):
        if column not in frame.columns:
            raise NumerlabError(f"per-era scores: no `{column}` column (columns: "
                                f"{frame.columns}); need era, corr and optionally mmc")
    if frame.height == 0:
        raise NumerlabError("per-era scores: no eras to backtest")
    if frame["era"].n_unique() != frame.height:
        duplicated = frame.filter(pl.col("era").is_duplicated())["era"][0]
        raise NumerlabError(f"per-era scores: era {duplicated!r} appears more than once")
    frame = in_era_order(frame)  # by era number: no lookahead
    corr = frame["corr"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if np.isnan(corr).any():
        bad = frame["era"][int(np.flatnonzero(np.isnan(corr))[0])]
        raise NumerlabError(f"per-era scores: corr is null/NaN in era {bad!r}")
    mmc = (frame["mmc"].cast(pl.Float64).fill_null(np.nan).to_numpy()
           if "mmc" in frame.columns else np.full(frame.height, np.nan))
    return frame["era"].to_list(), corr, mmc


# --- holdings -----------------------------------------------------------------------------


def _credit(stake: float, wallet: float, amount: float) -> tuple[float, float]:
    """A resolved payout added to the stake; a loss beyond the stake comes out of the
    wallet, and beyond that is not owed (holdings stay >= 0)."""
    stake += amount
    if stake < 0:
        wallet, stake = max(0.0, wallet + stake), 0.0
    return stake, wallet


def _settled(stake: float, wallet: float, pending: list[float]) -> tuple[float, float]:
    """Stake and wallet once the pending payouts resolve, in era order."""
    for amount in pending:
        stake, wallet = _credit(stake, wallet, amount)
    return stake, wallet


def simulate(per_era: Any, policy: StakePolicy, payout_cfg: PayoutRule | Mapping[str, Any],
             initial_stake: float, wallet: float = 0.0,
             resolution_lag_eras: int | None = None) -> pl.DataFrame:
    """Replay `policy` era by era (eras sorted); one row per era.

    per_era: `era`, `corr`, optional `mmc` (null = unknown: 0 in the payout, left out of the
    policy's MMC statistics). resolution_lag_eras: None = `payout_cfg.resolution_lag_eras`.

    Round t: credit era t-lag-1's payout; propose(policy, stake, wallet, scores of eras
    < t-lag); apply the change (wallet pays increases, takes decreases); stake that much in
    era t; payout_t = stake_t * payout_score_t.

    Columns: era; resolved_eras (how many eras the policy saw); wish (its raw target);
    proposed_change (after caps); capped_by; reason; stake (at risk in the era); wallet
    (after the change); payout_score; payout (NMR); cumulative (payout so far);
    settled_stake and equity (stake, and stake + wallet, once every payout so far resolves).
    """
    rule = PayoutRule.from_config(payout_cfg)
    lag = (rule.resolution_lag_eras if resolution_lag_eras is None
           else lag_eras(resolution_lag_eras))
    eras, corr, mmc = _era_scores(per_era)
    fraction = payout_score(corr, mmc, rule)
    stake = number("backtest.initial_stake", initial_stake, minimum=0)
    wallet = number("backtest.wallet", wallet, minimum=0)

    rows: dict[str, list] = {name: [] for name in (
        "resolved_eras", "wish", "proposed_change", "capped_by", "reason", "stake", "wallet",
        "payout", "settled_stake", "equity")}
    payouts: list[float] = []
    for t in range(len(eras)):
        resolved = max(0, t - lag)  # eras 0 .. resolved-1 have resolved by round t
        if resolved > 0:
            stake, wallet = _credit(stake, wallet, payouts[resolved - 1])
        scores = StakeInputs(corr=corr[:resolved], mmc=mmc[:resolved])
        proposal = propose(policy, stake, wallet, scores)
        stake, wallet = proposal.target, wallet - proposal.change
        wallet = max(0.0, wallet)  # an affordable increase leaves >= min_wallet up to rounding
        payouts.append(stake * float(fraction[t]))
        settled_stake, settled_wallet = _settled(stake, wallet, payouts[resolved:])
        for name, value in (("resolved_eras", resolved), ("wish", proposal.wish),
                            ("proposed_change", proposal.change),
                            ("capped_by", proposal.capped_by), ("reason", proposal.reason),
                            ("stake", stake), ("wallet", wallet), ("payout", payouts[-1]),
                            ("settled_stake", settled_stake),
                            ("equity", settled_stake + settled_wallet)):
            rows[name].append(value)

    return pl.DataFrame({
        "era": eras, **{k: rows[k] for k in ("resolved_eras", "wish", "proposed_change",
                                              "capped_by", "reason", "stake", "wallet")},
        "payout_score": fraction, "payout": rows["payout"],
        "cumulative": np.cumsum(rows["payout"]), "settled_stake": rows["settled_stake"],
        "equity": rows["equity"],
    }, schema_overrides={"capped_by": pl.String, "resolved_eras": pl.Int64})


# --- summary and plot ---------------------------------------------------------------------


def worst_drawdown(holdings: np.ndarray, start: float) -> float:
    """Largest fall from a running peak as a positive fraction of that peak:
    max_t (P_t - H_t) / P_t, P_t = max(start, H_0..H_t); 0 when nothing falls."""
    peaks = np.maximum.accumulate(np.concatenate([[start], np.asarray(holdings, float)]))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - holdings) / peaks, 0.0)
    return float(max(0.0, falls.max(initial=0.0)))


def summary(sim: pl.DataFrame) -> dict[str, float | int | None]:
    """final_stake: the stake once every payout resolves; total_return: final holdings
    (stake + wallet) / initial holdings - 1 (None when nothing was held); worst_drawdown:
    `worst_drawdown` of the holdings after each era (stake + wallet + pending payouts) from
    the initial holdings, as a positive fraction of the peak (= of the peak stake when the
    wallet is 0); total_payout; n_eras."""
    if sim.height == 0:
        raise NumerlabError("backtest summary: the simulation has no eras")
    equity = sim["equity"].to_numpy()
    # round 0 credits nothing, so its stake + wallet is the initial holdings
    start = float(sim["stake"][0] + sim["wallet"][0])
    return {
        "final_stake": float(sim["settled_stake"][-1]),
        "total_return": float(equity[-1] / start - 1.0) if start > 0 else None,
        "worst_drawdown": worst_drawdown(equity, start),
        "total_payout": float(sim["cumulative"][-1]),
        "n_eras": sim.height,
    }


def plot(sim: pl.DataFrame, fixed_sim: pl.DataFrame, path: str | Path,
         label: str = "policy", fixed_label: str = "fixed stake") -> Path:
    """PNG at `path`: stake at risk per era and cumulative payout, the policy against a
    fixed stake on the same eras. Returns the path."""
    from numerlab.report import pyplot

    plt = pyplot()

    if sim["era"].to_list() != fixed_sim["era"].to_list():
        raise NumerlabError("backtest plot: the policy and fixed-stake runs cover different "
                            "eras")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    eras = [str(era) for era in sim["era"].to_list()]
    x = np.arange(len(eras))
    tick_step = max(1, len(eras) // 10)

    fig, (ax_stake, ax_payout) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for frame, name in ((sim, label), (fixed_sim, fixed_label)):
        ax_stake.plot(x, frame["stake"].to_numpy(), label=name)
        ax_payout.plot(x, frame["cumulative"].to_numpy(), label=name)
    ax_stake.set_title("Stake at risk per era")
    ax_stake.set_ylabel("NMR")
    ax_stake.legend()
    ax_payout.axhline(0, color="grey", linewidth=0.8)
    ax_payout.set_title("Cumulative payout")
    ax_payout.set_ylabel("NMR")
    ax_payout.set_xlabel("era")
    ax_payout.set_xticks(x[::tick_step], eras[::tick_step], rotation=45)
    ax_payout.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the payout metric of a run (metrics.json `payout`, a sweep objective) ---------------

PAYOUT_METRIC = "payout"


def payout_mean(per_era: pl.DataFrame, payout_cfg: Mapping[str, Any]) -> float | None:
    """Mean over eras of Numerai's per-round payout as a fraction of the stake:

        mean_e clip(payout_factor * (corr_mult * CORR_e + mmc_mult * MMC_e), -clip, +clip)

    with the multipliers of `payout_cfg` (conf/payout/). As in the backtest, an era without
    MMC (no meta model for it, or no `mmc` column) pays on CORR alone; eras without CORR are
    left out. None when no era has a CORR."""
    rule = PayoutRule.from_config(payout_cfg)
    if "corr" not in per_era.columns:
        raise NumerlabError(f"per-era scores: no `corr` column (columns: {per_era.columns})")
    corr = per_era["corr"].cast(pl.Float64).fill_null(math.nan).to_numpy()
    mmc = (per_era["mmc"].cast(pl.Float64).fill_null(math.nan).to_numpy()
           if "mmc" in per_era.columns else np.full(per_era.height, math.nan))
    known = ~np.isnan(corr)
    if not known.any():
        return None
    return float(np.mean(payout_score(corr[known], mmc[known], rule)))


def payout_metrics(per_era: pl.DataFrame, payout_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """{"payout": payout_mean(...)}, to merge into a run's metrics.json."""
    return {PAYOUT_METRIC: payout_mean(per_era, payout_cfg)}
