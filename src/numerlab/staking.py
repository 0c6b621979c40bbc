"""Staking policies: how much NMR to stake next round, bounded by caps.

A policy turns resolved scores into a wish (`policy.target(scores, current_stake)`, NMR).
ONE function, `propose`, bounds every wish by the same caps, so no policy can break them:

- the stake is never negative;
- |change| <= caps.max_change per round;
- an increase never ends above caps.max_stake, and never takes the wallet below
  caps.min_wallet (an increase is paid from the wallet, a decrease goes back to it);
- a stake already above caps.max_stake (payouts compound) is brought down towards it by at
  most caps.max_change per round.

Each `conf/staking/<option>.yaml` names its class with `_target_`, so Hydra's
`instantiate(cfg.staking)` builds it; a new policy is one yaml plus one subclass of
`StakePolicy` implementing `decide`. Constructor arguments have no Python defaults: the
defaults live in conf/. Bad values raise a one-line NumerlabError naming the key.

Pure: numpy and polars only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import polars as pl

from numerlab.eras import in_era_order
from numerlab.errors import NumerlabError
from numerlab.scoring import sharpe
from numerlab.settings import integer, keys, number, required

CONFIG_PREFIX = "staking"
"""Config path of the policy keys, used in error messages."""


@dataclass(frozen=True)
class Caps:
    """Bounds every proposal obeys (NMR). `max_stake`/`max_change` None = no limit."""

    max_stake: float | None
    max_change: float | None
    min_wallet: float

    @classmethod
    def from_config(cls, caps: Caps | Mapping[str, Any]) -> Caps:
        """From the `staking.caps` mapping: exactly the fields of Caps; each >= 0
        (max_stake and max_change may be null = no limit)."""
        if isinstance(caps, Caps):
            return caps
        group, names = f"{CONFIG_PREFIX}.caps", [f.name for f in fields(cls)]
        if not isinstance(caps, Mapping):
            raise NumerlabError(f"{group}={caps!r} must be a mapping with keys "
                                f"{', '.join(names)}")
        keys(group, caps, names)
        required(group, caps, names)
        return cls(
            max_stake=number(f"{group}.max_stake", caps["max_stake"], minimum=0,
                             optional=True),
            max_change=number(f"{group}.max_change", caps["max_change"], minimum=0,
                              optional=True),
            min_wallet=number(f"{group}.min_wallet", caps["min_wallet"], minimum=0),
        )


NO_CAPS = Caps(max_stake=None, max_change=None, min_wallet=0.0)
"""No bounds beyond a stake >= 0 and an increase the wallet can pay."""


# --- what a policy sees -------------------------------------------------------------------


def _float_array(values: Any) -> np.ndarray:
    return np.asarray([] if values is None else values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class StakeInputs:
    """The resolved scores a policy may look at, oldest era first.

    corr, mmc: per-era CORR and MMC (NaN = not known, e.g. eras the meta model misses).
    corr_sharpe, mmc_sharpe: summary values (e.g. validation metrics.json) used when given,
    instead of the sharpe of the arrays. n_eras: how many eras the summary covers.
    """

    corr: np.ndarray = field(default_factory=lambda: np.empty(0))
    mmc: np.ndarray = field(default_factory=lambda: np.empty(0))
    corr_sharpe: float | None = None
    mmc_sharpe: float | None = None
    n_eras: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "corr", _float_array(self.corr))
        object.__setattr__(self, "mmc", _float_array(self.mmc))

    @classmethod
    def from_per_era(cls, per_era: Any) -> StakeInputs:
        """From a per-era table (polars or pandas) with `corr` and optionally `mmc`
        columns (as `per_era.parquet`), sorted by `era` when it has one; nulls become NaN."""
        frame = per_era if isinstance(per_era, pl.DataFrame) else pl.from_pandas(per_era)
        if "era" in frame.columns:
            frame = in_era_order(frame)  # by era number: no lookahead
        if "corr" not in frame.columns:
            raise NumerlabError(f"per-era scores: no `corr` column (columns: {frame.columns})")

        def column(name: str) -> np.ndarray:
            return frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

        mmc = column("mmc") if "mmc" in frame.columns else np.full(frame.height, np.nan)
        return cls(corr=column("corr"), mmc=mmc)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> StakeInputs:
        """From a `metrics.json` mapping: corr_sharpe, mmc_sharpe, n_eras (null allowed)."""
        def optional(key: str) -> float | None:
            value = metrics.get(key)
            return None if value is None else float(value)

        n_eras = metrics.get("n_eras")
        return cls(corr_sharpe=optional("corr_sharpe"), mmc_sharpe=optional("mmc_sharpe"),
                   n_eras=None if n_eras is None else int(n_eras))

    def era_count(self) -> int:
        """Eras behind the scores: the summary's n_eras when given, else the array length."""
        return self.n_eras if self.n_eras is not None else len(self.corr)

    def corr_sharpe_value(self) -> float:
        """The summary CORR sharpe if given, else mean/std (ddof=0) of the known eras;
        NaN when undefined."""
        if self.corr_sharpe is not None:
            return float(self.corr_sharpe)
        return sharpe(self.corr[~np.isnan(self.corr)])

    def mmc_sharpe_value(self) -> float:
        """As `corr_sharpe_value`, for MMC."""
        if self.mmc_sharpe is not None:
            return float(self.mmc_sharpe)
        return sharpe(self.mmc[~np.isnan(self.mmc)])


# --- policies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """A policy's raw wish (NMR) and why."""

    target: float
    reason: str


class StakePolicy:
    """Base class: holds the caps; subclasses implement `decide`."""

    def __init__(self, caps: Caps | Mapping[str, Any]) -> None:
        self.caps = Caps.from_config(caps)

    def decide(self, scores: StakeInputs, current_stake: float) -> Decision:
        raise NotImplementedError

    def target(self, scores: StakeInputs, current_stake: float) -> float:
        """The raw wish in NMR, before caps (`propose` applies them)."""
        return self.decide(scores, current_stake).target

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class NoStake(StakePolicy):
    """Proposes no change: the wish is the current stake."""

    def decide(self, scores: StakeInputs, current_stake: float) -> Decision:
        return Decision(current_stake, "no staking policy: hold")


class FixedStake(StakePolicy):
    """Wishes a fixed stake: target = `stake` NMR, whatever the scores."""

    def __init__(self, stake: float, caps: Caps | Mapping[str, Any]) -> None:
        super().__init__(caps)
        self.stake = number(f"{CONFIG_PREFIX}.stake", stake, minimum=0)

    def decide(self, scores: StakeInputs, current_stake: float) -> Decision:
        return Decision(self.stake, f"fixed target {self.stake:g} NMR")


class SharpeScaled(StakePolicy):
    """A stake that grows with the sharpe of the resolved scores:

        s      = corr_sharpe + mmc_weight * mmc_sharpe     (an undefined MMC sharpe counts 0)
        target = nmr_per_sharpe * max(0, s - min_sharpe)

    so nothing is staked below the threshold `min_sharpe`, and each unit of sharpe above it
    adds `nmr_per_sharpe` NMR. Sharpe = mean/std (ddof=0) of per-era scores, from the
    validation or resolved live eras, or the summary value in `StakeInputs`. With fewer than
    `min_eras` eras, or an undefined CORR sharpe (zero spread), the policy holds the current
    stake: too little evidence to move either way.
    """

    def __init__(self, nmr_per_sharpe: float, min_sharpe: float, mmc_weight: float,
                 min_eras: int, caps: Caps | Mapping[str, Any]) -> None:
        super().__init__(caps)
        self.nmr_per_sharpe = number(f"{CONFIG_PREFIX}.nmr_per_sharpe", nmr_per_sharpe,
                                     minimum=0)
        self.min_sharpe = number(f"{CONFIG_PREFIX}.min_sharpe", min_sharpe, minimum=0)
        self.mmc_weight = number(f"{CONFIG_PREFIX}.mmc_weight", mmc_weight, minimum=0)
        self.min_eras = integer(f"{CONFIG_PREFIX}.min_eras", min_eras, minimum=2)

    def score_sharpe(self, scores: StakeInputs) -> float:
        """s = corr_sharpe + mmc_weight * mmc_sharpe (NaN when the CORR sharpe is)."""
        mmc = scores.mmc_sharpe_value() if self.mmc_weight > 0 else 0.0
        return scores.corr_sharpe_value() + self.mmc_weight * (0.0 if math.isnan(mmc) else mmc)

    def decide(self, scores: StakeInputs, current_stake: float) -> Decision:
        n_eras = scores.era_count()
        if n_eras < self.min_eras:
            return Decision(current_stake, f"{n_eras} resolved eras < min_eras "
                                           f"{self.min_eras}: hold")
        s = self.score_sharpe(scores)
        if not math.isfinite(s):
            return Decision(current_stake, "sharpe undefined (no spread in scores): hold")
        wish = self.nmr_per_sharpe * max(0.0, s - self.min_sharpe)
        relation = ">=" if s >= self.min_sharpe else "<"
        return Decision(wish, f"sharpe {s:.3f} {relation} min_sharpe {self.min_sharpe:g}: "
                              f"target {wish:g} NMR")


def current_drawdown(per_era: np.ndarray) -> float:
    """How far the cumulative score now sits below its running peak, the peak starting at 0:
    max_{s<=T} C_s - C_T, C_0 = 0, C_t = x_1 + ... + x_t. Non-negative; 0 for no eras."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(per_era, dtype=np.float64))])
    return float(np.max(cumulative) - cumulative[-1])


class DrawdownGuard(StakePolicy):
    """Cuts the stake while the guarded score is in a drawdown beyond `max_drawdown`:

        x_t     = corr_weight * CORR_t + mmc_weight * MMC_t        (unknown MMC counts 0)
        dd      = current_drawdown(x)      (peak of the cumulative x minus its last value)
        base    = base_target, or the current stake when base_target is null (hold)
        target  = base * (1 - cut_fraction)   if dd > max_drawdown   else base

    With `cut_fraction` 1 the stake goes to zero. With base_target null the cut applies
    again every round the drawdown lasts (the current stake shrinks geometrically); with a
    base_target it is one level, base_target * (1 - cut_fraction). Weights equal to the
    payout multipliers guard the (unclipped) payout score. Without per-era scores there is
    no drawdown to see, and the policy follows the base.
    """

    def __init__(self, max_drawdown: float, cut_fraction: float, base_target: float | None,
                 corr_weight: float, mmc_weight: float,
                 caps: Caps | Mapping[str, Any]) -> None:
        super().__init__(caps)
        self.max_drawdown = number(f"{CONFIG_PREFIX}.max_drawdown", max_drawdown, above=0)
        self.cut_fraction = number(f"{CONFIG_PREFIX}.cut_fraction", cut_fraction, above=0,
                                   maximum=1)
        self.base_target = number(f"{CONFIG_PREFIX}.base_target", base_target, minimum=0,
                                  optional=True)
        self.corr_weight = number(f"{CONFIG_PREFIX}.corr_weight", corr_weight, minimum=0)
        self.mmc_weight = number(f"{CONFIG_PREFIX}.mmc_weight", mmc_weight, minimum=0)
        if self.corr_weight == 0 and self.mmc_weight == 0:
            raise NumerlabError(f"{CONFIG_PREFIX}.corr_weight=0 and {CONFIG_PREFIX}.mmc_weight=0"
                                ": at least one must be > 0")

    def guarded_score(self, scores: StakeInputs) -> np.ndarray:
        """x_t = corr_weight * CORR_t + mmc_weight * MMC_t per era (NaN counts 0)."""
        corr = np.nan_to_num(scores.corr, nan=0.0)
        mmc = np.zeros_like(corr)
        known = min(len(corr), len(scores.mmc))
        mmc[:known] = np.nan_to_num(scores.mmc[:known], nan=0.0)
        return self.corr_weight * corr + self.mmc_weight * mmc

    def decide(self, scores: StakeInputs, current_stake: float) -> Decision:
        base = current_stake if self.base_target is None else self.base_target
        base_name = "hold" if self.base_target is None else f"base {base:g} NMR"
        drawdown = current_drawdown(self.guarded_score(scores))
        if drawdown > self.max_drawdown:
            wish = base * (1.0 - self.cut_fraction)
            return Decision(wish, f"drawdown {drawdown:.4f} > {self.max_drawdown:g}: cut "
                                  f"{self.cut_fraction:g} of {base:g} to {wish:g} NMR")
        return Decision(base, f"drawdown {drawdown:.4f} <= {self.max_drawdown:g}: {base_name}")


# --- caps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StakeProposal:
    """What to stake next round.

    current: the stake now; target: the stake after the change (caps applied);
    change = target - current; wish: the policy's raw wish; capped_by: the cap that set the
    final value ("max_stake", "max_change", "min_wallet"), None when the wish went through.
    """

    current: float
    target: float
    change: float
    capped_by: str | None
    reason: str
    wish: float


def _checked_amount(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise NumerlabError(f"{name}={value}: must be a finite number >= 0 NMR")
    return value


def propose(policy: StakePolicy, current_stake: float, wallet: float,
            scores: StakeInputs) -> StakeProposal:
    """The policy's wish bounded by its caps, in this order:

    1. wish < 0 -> 0 (a NaN wish -> hold the current stake);
    2. wish above max_stake -> max_stake;
    3. |change| above max_change -> sign * max_change;
    4. an increase above what the wallet can pay keeping min_wallet ->
       max(0, wallet - min_wallet).

    Step 2 never raises a stake: a stake already above max_stake moves down towards it,
    by at most max_change. `capped_by` names the last cap that changed the value.
    """
    current = _checked_amount("current_stake", current_stake)
    wallet = _checked_amount("wallet", wallet)
    decision = policy.decide(scores, current)
    caps = policy.caps
    wish = float(decision.target)
    capped_by: str | None = None

    goal = current if math.isnan(wish) else max(0.0, wish)
    if caps.max_stake is not None and goal > caps.max_stake:
        goal, capped_by = caps.max_stake, "max_stake"
    change = goal - current
    if caps.max_change is not None and abs(change) > caps.max_change:
        change, capped_by = math.copysign(caps.max_change, change), "max_change"
    affordable = max(0.0, wallet - caps.min_wallet)
    if change > affordable:
        change, capped_by = affordable, "min_wallet"
    target = goal if capped_by in (None, "max_stake") else current + change
    # current + change may round one ulp past goal; the caps must hold exactly
    target = min(target, goal) if goal >= current else max(target, goal)
    reason = decision.reason + (f"; capped by {capped_by}" if capped_by else "")
    return StakeProposal(current=current, target=target, change=change,
                         capped_by=capped_by, reason=reason, wish=wish)


def build_policy(staking_cfg: Any) -> StakePolicy:
    """The policy a `staking` option names (`_target_`), built with its settings checked:
    a bad value or an unknown key is one line (`numerlab.registry.build`)."""
    from numerlab.registry import build

    return build(staking_cfg, "staking", StakePolicy)
