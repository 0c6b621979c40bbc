"""Staking policies: how much NMR to stake, bounded by caps.

A policy turns resolved scores into a wish (`policy.target(scores, current_stake)`, NMR)
and carries the mode its stake runs in (`staking.mode`). What the wish means depends on how
the tournament stakes (`tournament.staking`, `payout.rule`):

- Atomic Blockchain Staking ("abs", Numerai since mid-2026): the per-round stake, the NMR
  locked in the position each round opens until that round resolves. `mode` says what a
  resolved position's value does next: `fixed` stakes the per-round amount and leaves any
  more idle (a maximum), `compound` restakes a larger resolved value (a minimum).
  `propose_round` bounds the wish: never negative; never above caps.max_stake; never taking
  the NMR locked across the open rounds above caps.max_locked; never taking a known wallet
  below caps.min_wallet; |change| <= caps.max_change, unless one of those ceilings forces a
  larger cut (each round opens a new position, so a ceiling holds at once).
- The legacy continuous stake ("v2"): one stake, changed by increases and decreases.
  `propose` bounds the wish: never negative; |change| <= caps.max_change per round; an
  increase never ends above caps.max_stake nor takes the wallet below caps.min_wallet (an
  increase is paid from the wallet, a decrease goes back to it); a stake already above
  caps.max_stake (payouts compound) comes down towards it by at most caps.max_change per
  round. max_locked is an ABS cap (v2 has no positions).

An unknown wallet (None: Numerai did not say) bounds nothing and the reason says "wallet
unknown". Each `conf/staking/<option>.yaml` names its class with `_target_`, so Hydra's
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
from numerlab.settings import choice, integer, keys, number, required

CONFIG_PREFIX = "staking"
"""Config path of the policy keys, used in error messages."""
FIXED, COMPOUND = "fixed", "compound"
MODES = (FIXED, COMPOUND)  # staking.mode: what an ABS position's resolved value does next
WALLET_UNKNOWN = "wallet unknown"
VALIDATION, LIVE = "validation", "live"
SCORE_SOURCES = (VALIDATION, LIVE)  # staking.scores: what the policy sizes from
MIN_LIVE_ROUNDS = 2  # resolved live rounds below which staking.scores=live refuses to size


@dataclass(frozen=True)
class Caps:
    """Bounds every proposal obeys (NMR); None = no limit. max_stake: the stake (ABS: of
    one round's position); max_locked: NMR locked across the open rounds (ABS);
    max_change: one decision's change either way; min_wallet: left in the wallet."""

    max_stake: float | None
    max_locked: float | None
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
            max_locked=number(f"{group}.max_locked", caps["max_locked"], minimum=0,
                              optional=True),
            max_change=number(f"{group}.max_change", caps["max_change"], minimum=0,
                              optional=True),
            min_wallet=number(f"{group}.min_wallet", caps["min_wallet"], minimum=0),
        )


NO_CAPS = Caps(max_stake=None, max_locked=None, max_change=None, min_wallet=0.0)
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
    """Base class: holds the caps, the mode and where its scores come from (`scores`:
    validation or live); subclasses implement `decide`."""

    def __init__(self, caps: Caps | Mapping[str, Any], mode: str,
                 scores: str = VALIDATION) -> None:
        self.caps = Caps.from_config(caps)
        self.mode = choice(f"{CONFIG_PREFIX}.mode", mode, MODES)
        # where the task takes the scores from (staking.scores): the run's per-era
        # validation scores, or the model's resolved live rounds
        self.scores = choice(f"{CONFIG_PREFIX}.scores", scores, SCORE_SOURCES)

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

    def __init__(self, stake: float, caps: Caps | Mapping[str, Any], mode: str,
                 scores: str = VALIDATION) -> None:
        super().__init__(caps, mode, scores)
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
                 min_eras: int, caps: Caps | Mapping[str, Any], mode: str,
                 scores: str = VALIDATION) -> None:
        super().__init__(caps, mode, scores)
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
                 caps: Caps | Mapping[str, Any], mode: str, scores: str = VALIDATION) -> None:
        super().__init__(caps, mode, scores)
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


# --- caps: the legacy continuous stake (v2) ----------------------------------------------


@dataclass(frozen=True)
class StakeProposal:
    """What to stake next round (v2).

    current: the stake now; target: the stake after the change (caps applied);
    change = target - current; wish: the policy's raw wish; capped_by: the cap that set the
    final value ("max_stake", "max_change", "min_wallet"), None when the wish went through;
    wallet: what the proposal was bounded by (None: unknown, not bounded).
    """

    current: float
    target: float
    change: float
    capped_by: str | None
    reason: str
    wish: float
    wallet: float | None = None


def _checked_amount(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise NumerlabError(f"{name}={value}: must be a finite number >= 0 NMR")
    return value


def _checked_wallet(wallet: float | None) -> float | None:
    return None if wallet is None else _checked_amount("wallet", wallet)


def _reason(decision: Decision, capped_by: str | None, wallet: float | None) -> str:
    return (decision.reason + (f"; capped by {capped_by}" if capped_by else "")
            + (f"; {WALLET_UNKNOWN}" if wallet is None else ""))


def propose(policy: StakePolicy, current_stake: float, wallet: float | None,
            scores: StakeInputs) -> StakeProposal:
    """The policy's wish for the continuous (v2) stake bounded by its caps, in this order:

    1. wish < 0 -> 0 (a NaN wish -> hold the current stake);
    2. wish above max_stake -> max_stake;
    3. |change| above max_change -> sign * max_change;
    4. an increase above what the wallet can pay keeping min_wallet ->
       max(0, wallet - min_wallet); an unknown wallet (None) bounds nothing.

    Step 2 never raises a stake: a stake already above max_stake moves down towards it,
    by at most max_change. `capped_by` names the last cap that changed the value.
    """
    current = _checked_amount("current_stake", current_stake)
    wallet = _checked_wallet(wallet)
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
    if wallet is not None:
        affordable = max(0.0, wallet - caps.min_wallet)
        if change > affordable:
            change, capped_by = affordable, "min_wallet"
    target = goal if capped_by in (None, "max_stake") else current + change
    # current + change may round one ulp past goal; the caps must hold exactly
    target = min(target, goal) if goal >= current else max(target, goal)
    return StakeProposal(current=current, target=target, change=change,
                         capped_by=capped_by, reason=_reason(decision, capped_by, wallet),
                         wish=wish, wallet=wallet)


# --- caps: Atomic Blockchain Staking (a position per round) -------------------------------


@dataclass(frozen=True)
class RoundStakeProposal:
    """The per-round stake of the next ABS position.

    current: the per-round stake now (the newest position's); stake: the per-round stake
    to open next (caps applied); change = stake - current; mode: fixed or compound;
    locked: NMR locked in the open positions before it; wallet: NMR the staker holds (None:
    unknown); wish: the policy's raw wish; capped_by: the cap that set the value
    ("max_stake", "max_locked", "max_change", "min_wallet") or None."""

    current: float
    stake: float
    change: float
    mode: str
    locked: float
    wallet: float | None
    capped_by: str | None
    reason: str
    wish: float

    @property
    def locked_after(self) -> float:
        """NMR locked once the position opens."""
        return self.locked + self.stake


def ceilings(caps: Caps, locked: float, wallet: float | None) -> list[tuple[str, float]]:
    """The most one new position may hold, cap by cap: max_stake; max_locked - locked
    (the room left under the locked total); wallet - min_wallet (a known wallet pays it);
    each >= 0."""
    found = []
    if caps.max_stake is not None:
        found.append(("max_stake", caps.max_stake))
    if caps.max_locked is not None:
        found.append(("max_locked", max(0.0, caps.max_locked - locked)))
    if wallet is not None:
        found.append(("min_wallet", max(0.0, wallet - caps.min_wallet)))
    return found


def within_ceilings(amount: float, caps: Caps, locked: float, wallet: float | None
                    ) -> tuple[float, str | None]:
    """`amount` (>= 0) cut to the lowest ceiling it passes, and that ceiling's name."""
    capped_by = None
    for name, ceiling in ceilings(caps, locked, wallet):
        if amount > ceiling:
            amount, capped_by = ceiling, name
    return amount, capped_by


def propose_round(policy: StakePolicy, current_stake: float, wallet: float | None,
                  locked: float, scores: StakeInputs) -> RoundStakeProposal:
    """The policy's wish for the next per-round stake, bounded by its caps in this order:

    1. wish < 0 -> 0 (a NaN wish -> hold the current per-round stake);
    2. |change| above max_change -> current +/- max_change;
    3. above a ceiling (`ceilings`: max_stake, max_locked - locked, wallet - min_wallet)
       -> that ceiling; a ceiling wins over max_change (the NMR at risk is bounded first).

    An unknown wallet (None) bounds nothing; the reason then says "wallet unknown".
    """
    current = _checked_amount("current_stake", current_stake)
    locked = _checked_amount("locked", locked)
    wallet = _checked_wallet(wallet)
    decision = policy.decide(scores, current)
    caps = policy.caps
    wish = float(decision.target)
    capped_by: str | None = None

    goal = current if math.isnan(wish) else max(0.0, wish)
    if caps.max_change is not None and abs(goal - current) > caps.max_change:
        goal = max(0.0, current + math.copysign(caps.max_change, goal - current))
        capped_by = "max_change"
    goal, ceiling = within_ceilings(goal, caps, locked, wallet)
    capped_by = ceiling or capped_by
    return RoundStakeProposal(current=current, stake=goal, change=goal - current,
                              mode=policy.mode, locked=locked, wallet=wallet,
                              capped_by=capped_by, reason=_reason(decision, capped_by, wallet),
                              wish=wish)


def build_policy(staking_cfg: Any) -> StakePolicy:
    """The policy a `staking` option names (`_target_`), built with its settings checked:
    a bad value or an unknown key is one line (`numerlab.registry.build`)."""
    from numerlab.registry import build

    return build(staking_cfg, "staking", StakePolicy)
