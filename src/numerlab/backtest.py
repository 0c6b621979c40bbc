"""Payout backtest: replay a staking policy over per-era scores, round by round.

Two payout rules (`conf/payout/`, `payout.rule`), each era one round:

- `abs` (Atomic Blockchain Staking, Numerai since mid-2026): each era opens one position
  with the policy's per-round stake, locked until it resolves `resolution_eras` later
  (the target's horizon: 4 eras for a 20-day target, 12 for a 60-day one); then the staker
  gets back stake + payout, payout = stake * clip(payout_factor * (corr_mult * CORR +
  mmc_mult * MMC), -clip, +clip) with clip 1. `simulate_abs`.
- `v2` (the legacy continuous stake): one stake, paid every round by the same formula
  with clip 0.05, payouts compounding into it `resolution_lag_eras` later. `simulate`.

An era with no MMC (null/NaN, e.g. no meta model for it) pays on CORR alone: its MMC
counts 0. No lookahead: a round's policy sees only the scores resolved by then.

Pure: numpy and polars; matplotlib is imported inside `plot`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from numerlab.eras import in_era_order
from numerlab.errors import NumerlabError
from numerlab.settings import choice, integer, keys, number, required
from numerlab.staking import (
    COMPOUND,
    StakeInputs,
    StakePolicy,
    propose,
    propose_round,
    within_ceilings,
)

PAYOUT_PREFIX = "payout"
ABS_RULE, V2_RULE = "abs", "v2"
RULES = (ABS_RULE, V2_RULE)  # payout.rule
MULTIPLIER_SOURCES = ("api", "config")  # payout.multipliers_from (abs)


def _rule_values(cls: type, cfg: Any) -> Mapping[str, Any]:
    """`cfg` checked to hold exactly `rule` and the fields of `cls`, its rule cls.rule."""
    names = ["rule", *(f.name for f in fields(cls))]
    if not isinstance(cfg, Mapping):
        raise NumerlabError(f"{PAYOUT_PREFIX}={cfg!r} must be a mapping with keys "
                            f"{', '.join(names)}")
    keys(PAYOUT_PREFIX, cfg, names)
    required(PAYOUT_PREFIX, cfg, names)
    if cfg["rule"] != cls.rule:
        raise NumerlabError(f"{PAYOUT_PREFIX}.rule={cfg['rule']!r}: expected {cls.rule!r} "
                            f"here")
    return cfg


def _value(cfg: Mapping[str, Any], key: str, **bounds: Any) -> float:
    return number(f"{PAYOUT_PREFIX}.{key}", cfg[key], **bounds)


@dataclass(frozen=True)
class PayoutRule:
    """The legacy (v2) rule of `conf/payout/v2.yaml`: multipliers, clip, factor, and how
    many eras scores take to resolve."""

    rule: ClassVar[str] = V2_RULE
    corr_mult: float
    mmc_mult: float
    clip: float
    payout_factor: float
    resolution_lag_eras: int

    @classmethod
    def from_config(cls, cfg: PayoutRule | Mapping[str, Any]) -> PayoutRule:
        """From the `payout` mapping: `rule: v2` and exactly the fields of PayoutRule;
        multipliers and factor >= 0, clip in [0, 1], resolution_lag_eras an integer >= 0."""
        if isinstance(cfg, PayoutRule):
            return cfg
        cfg = _rule_values(cls, cfg)
        return cls(corr_mult=_value(cfg, "corr_mult", minimum=0),
                   mmc_mult=_value(cfg, "mmc_mult", minimum=0),
                   clip=_value(cfg, "clip", minimum=0, maximum=1),
                   payout_factor=_value(cfg, "payout_factor", minimum=0),
                   resolution_lag_eras=lag_eras(cfg["resolution_lag_eras"]))


@dataclass(frozen=True)
class AbsPayoutRule:
    """Atomic Blockchain Staking's rule of `conf/payout/abs.yaml`: per position, payout =
    stake * clip(payout_factor * (corr_mult * CORR + mmc_mult * MMC), -clip, +clip).

    multipliers_from "api": the backtest takes the current round's multipliers where
    Numerai's API answers (`rounds { roundScoreConfigs }`), corr_mult/mmc_mult otherwise;
    "config": always these. resolution_eras: eras from a position's opening to its
    resolution; None = the target's horizon (`numerlab.eras.horizon_eras`)."""

    rule: ClassVar[str] = ABS_RULE
    corr_mult: float
    mmc_mult: float
    multipliers_from: str
    clip: float
    payout_factor: float
    resolution_eras: int | None

    @classmethod
    def from_config(cls, cfg: AbsPayoutRule | Mapping[str, Any]) -> AbsPayoutRule:
        """From the `payout` mapping: `rule: abs` and exactly the fields above;
        multipliers and factor >= 0, clip in [0, 1], resolution_eras null or >= 1."""
        if isinstance(cfg, AbsPayoutRule):
            return cfg
        cfg = _rule_values(cls, cfg)
        resolution = cfg["resolution_eras"]
        return cls(corr_mult=_value(cfg, "corr_mult", minimum=0),
                   mmc_mult=_value(cfg, "mmc_mult", minimum=0),
                   multipliers_from=choice(f"{PAYOUT_PREFIX}.multipliers_from",
                                           cfg["multipliers_from"], MULTIPLIER_SOURCES),
                   clip=_value(cfg, "clip", minimum=0, maximum=1),
                   payout_factor=_value(cfg, "payout_factor", minimum=0),
                   resolution_eras=None if resolution is None else integer(
                       f"{PAYOUT_PREFIX}.resolution_eras", resolution, minimum=1))


def payout_rule(cfg: Any) -> PayoutRule | AbsPayoutRule:
    """The rule a `payout` mapping names with `rule` (abs or v2), checked."""
    if isinstance(cfg, PayoutRule | AbsPayoutRule):
        return cfg
    if not isinstance(cfg, Mapping):
        raise NumerlabError(f"{PAYOUT_PREFIX}={cfg!r} must be a mapping with a `rule` "
                            f"({', '.join(RULES)})")
    required(PAYOUT_PREFIX, cfg, ["rule"])
    rule = choice(f"{PAYOUT_PREFIX}.rule", cfg["rule"], RULES)
    return (AbsPayoutRule if rule == ABS_RULE else PayoutRule).from_config(cfg)


def lag_eras(value: Any) -> int:
    """`payout.resolution_lag_eras` checked: an integer >= 0."""
    return integer(f"{PAYOUT_PREFIX}.resolution_lag_eras", value, minimum=0)


def payout_score(corr: np.ndarray, mmc: np.ndarray, rule: PayoutRule | AbsPayoutRule
                 ) -> np.ndarray:
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


# --- Atomic Blockchain Staking: a position per era ----------------------------------------


def simulate_abs(per_era: Any, policy: StakePolicy,
                 payout_cfg: AbsPayoutRule | Mapping[str, Any], initial_stake: float,
                 wallet: float, resolution_eras: int) -> pl.DataFrame:
    """Replay `policy` under Atomic Blockchain Staking, era by era (eras sorted); one row
    per era. h = resolution_eras (>= 1): a position opened in era t resolves in era t + h.

    Era t: (1) the position of era t-h resolves: its stake + payout goes back to the wallet
    (payout = stake * payout_score, >= -stake with clip <= 1); (2) the policy sees the
    scores of the resolved eras 0 .. t-h and proposes the per-round stake
    (`staking.propose_round`, current = the last per-round stake, starting at
    `initial_stake`; its caps against the NMR locked and the wallet); (3) the mode opens
    the position: fixed stakes the per-round stake; compound stakes the value that resolved
    this era when it is larger (payouts compound), cut to the same ceilings
    (`staking.within_ceilings`); (4) the wallet pays it and it stays locked for h eras.
    Holdings (wallet + locked) never go negative: a position loses at most its stake.

    Columns: era; resolved_eras (how many eras the policy saw); wish; per_round_stake (the
    policy's, caps applied); capped_by; reason; mode; stake (the position opened);
    payout_score; position_payout (what this era's position will pay, stake *
    payout_score); resolved_payout (the payout of the position resolving this era, 0 if
    none); cumulative (resolved payouts so far); locked (NMR in open positions, after the
    opening); wallet (after it); holdings (wallet + locked); equity (holdings once every
    open position resolves).
    """
    rule = AbsPayoutRule.from_config(payout_cfg)
    horizon = integer("payout.resolution_eras", resolution_eras, minimum=1)
    eras, corr, mmc = _era_scores(per_era)
    fraction = payout_score(corr, mmc, rule)
    per_round = number("backtest.initial_stake", initial_stake, minimum=0)
    wallet = number("backtest.wallet", wallet, minimum=0)
    locked, cumulative = 0.0, 0.0
    stakes: list[float] = []
    rows: dict[str, list] = {name: [] for name in (
        "resolved_eras", "wish", "per_round_stake", "capped_by", "reason", "stake",
        "position_payout", "resolved_payout", "cumulative", "locked", "wallet", "holdings",
        "equity")}
    for t in range(len(eras)):
        released, resolved_payout = 0.0, 0.0
        if t >= horizon:  # the position of era t - h resolves
            opened = stakes[t - horizon]
            resolved_payout = opened * float(fraction[t - horizon])
            released = opened + resolved_payout
            locked = max(0.0, locked - opened)
            wallet += released
            cumulative += resolved_payout
        seen = max(0, t - horizon + 1)  # eras 0 .. t-h have resolved
        proposal = propose_round(policy, per_round, wallet, locked,
                                 StakeInputs(corr=corr[:seen], mmc=mmc[:seen]))
        per_round, stake, capped_by = proposal.stake, proposal.stake, proposal.capped_by
        if policy.mode == COMPOUND and released > stake:
            stake, ceiling = within_ceilings(released, policy.caps, locked, wallet)
            capped_by = ceiling or capped_by
        stake = min(stake, wallet)  # rounding: never more than the wallet holds
        wallet, locked = wallet - stake, locked + stake
        stakes.append(stake)
        pending = sum(stakes[e] * (1.0 + float(fraction[e]))
                      for e in range(max(0, t - horizon + 1), t + 1))
        for name, value in (("resolved_eras", seen), ("wish", proposal.wish),
                            ("per_round_stake", per_round), ("capped_by", capped_by),
                            ("reason", proposal.reason), ("stake", stake),
                            ("position_payout", stake * float(fraction[t])),
                            ("resolved_payout", resolved_payout),
                            ("cumulative", cumulative), ("locked", locked),
                            ("wallet", wallet), ("holdings", wallet + locked),
                            ("equity", wallet + pending)):
            rows[name].append(value)

    return pl.DataFrame({
        "era": eras, **{k: rows[k] for k in ("resolved_eras", "wish", "per_round_stake",
                                              "capped_by", "reason")},
        "mode": [policy.mode] * len(eras), "stake": rows["stake"], "payout_score": fraction,
        **{k: rows[k] for k in ("position_payout", "resolved_payout", "cumulative", "locked",
                                "wallet", "holdings", "equity")},
    }, schema_overrides={"capped_by": pl.String, "resolved_eras": pl.Int64})


# --- summary and plot ---------------------------------------------------------------------


def worst_drawdown(holdings: np.ndarray, start: float) -> float:
    """Largest fall from a running peak as a positive fraction of that peak:
    max_t (P_t - H_t) / P_t, P_t = max(start, H_0..H_t); 0 when nothing falls."""
    peaks = np.maximum.accumulate(np.concatenate([[start], np.asarray(holdings, float)]))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - holdings) / peaks, 0.0)
    return float(max(0.0, falls.max(initial=0.0)))


def initial_capital(sim: pl.DataFrame) -> float:
    """The NMR a simulation starts with, the denominator of its returns: the stake and the
    wallet after round 0, which credits nothing (v2: the initial stake + wallet; abs: the
    wallet before the first position, nothing locked yet)."""
    return float(sim["stake"][0] + sim["wallet"][0])


def summary(sim: pl.DataFrame) -> dict[str, float | int | None]:
    """capital: `initial_capital`; total_return: final holdings once every payout resolves
    (equity) / capital - 1 (None when capital is 0); worst_drawdown: `worst_drawdown` of
    the equity after each era from the capital, as a positive fraction of the peak;
    total_payout (NMR, every position or round so far, as if resolved); n_eras;
    final_stake: v2, the stake once every payout resolves; abs, the last position's stake;
    abs also peak_locked (the most NMR locked at once)."""
    if sim.height == 0:
        raise NumerlabError("backtest summary: the simulation has no eras")
    equity = sim["equity"].to_numpy()
    capital = initial_capital(sim)
    positions = "locked" in sim.columns
    out: dict[str, float | int | None] = {
        "final_stake": float(sim["stake"][-1] if positions else sim["settled_stake"][-1]),
        "capital": capital,
        "total_return": float(equity[-1] / capital - 1.0) if capital > 0 else None,
        "worst_drawdown": worst_drawdown(equity, capital),
        "total_payout": float(sim["position_payout"].sum() if positions
                              else sim["cumulative"][-1]),
        "n_eras": sim.height,
    }
    if positions:
        out["peak_locked"] = float(sim["locked"].max())
    return out


def plot(sim: pl.DataFrame, fixed_sim: pl.DataFrame, path: str | Path,
         label: str = "policy", fixed_label: str = "fixed stake") -> Path:
    """PNG at `path`: the stake per era (abs: the position opened, and the NMR locked) and
    the cumulative resolved payout, the policy against the baseline on the same eras."""
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
    positions = "locked" in sim.columns
    panels = [("stake", "Stake opened per era" if positions else "Stake at risk per era")]
    if positions:
        panels.append(("locked", "NMR locked in open positions"))
    panels.append(("cumulative", "Cumulative resolved payout"))

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.5 * len(panels)), sharex=True)
    for ax, (column, title) in zip(axes, panels, strict=True):
        for frame, name in ((sim, label), (fixed_sim, fixed_label)):
            ax.plot(x, frame[column].to_numpy(), label=name)
        ax.set_title(title)
        ax.set_ylabel("NMR")
        ax.legend()
    axes[-1].axhline(0, color="grey", linewidth=0.8)
    axes[-1].set_xlabel("era")
    axes[-1].set_xticks(x[::tick_step], eras[::tick_step], rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the payout metric of a run (metrics.json `payout`, a sweep objective) ---------------

PAYOUT_METRIC = "payout"


def payout_mean(per_era: pl.DataFrame, payout_cfg: Mapping[str, Any]) -> float | None:
    """Mean over eras of Numerai's per-round payout as a fraction of the stake:

        mean_e clip(payout_factor * (corr_mult * CORR_e + mmc_mult * MMC_e), -clip, +clip)

    with the rule and multipliers of `payout_cfg` (conf/payout/; always its own values,
    never the API's: a run's metrics do not depend on the network). As in the backtest, an
    era without MMC (no meta model for it, or no `mmc` column) pays on CORR alone; eras
    without CORR are left out. None when no era has a CORR."""
    rule = payout_rule(payout_cfg)
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
