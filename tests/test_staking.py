"""Staking policies and the caps: properties over random inputs, and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import compose
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from numerlab.errors import NumerlabError
from numerlab.staking import (
    MODES,
    Caps,
    DrawdownGuard,
    FixedStake,
    NoStake,
    SharpeScaled,
    StakeInputs,
    build_policy,
    current_drawdown,
    propose,
    propose_round,
)

NO_CAPS = {"max_stake": None, "max_locked": None, "max_change": None, "min_wallet": 0.0}


def caps(max_stake=None, max_change=None, min_wallet=0.0, max_locked=None) -> dict:
    return {"max_stake": max_stake, "max_locked": max_locked, "max_change": max_change,
            "min_wallet": min_wallet}


# --- random inputs ------------------------------------------------------------------------

nmr = st.floats(min_value=0, max_value=1e5, allow_nan=False, allow_infinity=False)
optional_nmr = st.one_of(st.none(), nmr)
random_caps = st.builds(caps, optional_nmr, optional_nmr, nmr, optional_nmr)
mode = st.sampled_from(MODES)
score = st.floats(min_value=-0.3, max_value=0.3, allow_nan=False)
maybe_score = st.one_of(score, st.just(math.nan))


@st.composite
def stake_inputs(draw) -> StakeInputs:
    n = draw(st.integers(0, 40))
    corr = draw(st.lists(score, min_size=n, max_size=n))
    mmc = draw(st.lists(maybe_score, min_size=n, max_size=n))
    if draw(st.booleans()):  # a summary (metrics.json) instead of, or beside, the arrays
        sharpe = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False))
        return StakeInputs(corr=corr, mmc=mmc, corr_sharpe=draw(sharpe),
                           mmc_sharpe=draw(sharpe), n_eras=draw(st.integers(0, 500)))
    return StakeInputs(corr=corr, mmc=mmc)


positive = st.floats(min_value=1e-6, max_value=10, allow_nan=False)
weight = st.floats(min_value=0, max_value=5, allow_nan=False)
policies = st.one_of(
    st.builds(NoStake, caps=random_caps, mode=mode),
    st.builds(FixedStake, stake=nmr, caps=random_caps, mode=mode),
    st.builds(SharpeScaled, nmr_per_sharpe=nmr, min_sharpe=st.floats(0, 3),
              mmc_weight=weight, min_eras=st.integers(2, 30), caps=random_caps, mode=mode),
    st.builds(DrawdownGuard, max_drawdown=positive, cut_fraction=st.floats(0.01, 1.0),
              base_target=optional_nmr, corr_weight=st.floats(0.1, 5), mmc_weight=weight,
              caps=random_caps, mode=mode),
)


def tolerance(*amounts: float) -> float:
    """Float rounding room for sums of NMR amounts of this size."""
    return 1e-9 * max(1.0, *(abs(a) for a in amounts if a is not None))


@settings(max_examples=400, deadline=None)
@given(policy=policies, current=nmr, wallet=nmr, scores=stake_inputs())
def test_no_policy_proposes_outside_the_caps(policy, current, wallet, scores):
    p = propose(policy, current, wallet, scores)
    c = policy.caps
    tol = tolerance(current, wallet, c.max_stake, c.max_change, c.min_wallet)
    assert p.current == current
    assert p.target >= 0
    assert math.isfinite(p.target) and math.isfinite(p.change)
    assert abs(p.target - (current + p.change)) <= tol
    if c.max_change is not None:
        assert abs(p.change) <= c.max_change + tol
    if c.max_stake is not None:
        assert p.target <= max(current, c.max_stake) + tol
        if p.change > 0:
            assert p.target <= c.max_stake + tol
    if p.change > 0:
        assert wallet - p.change >= c.min_wallet - tol


@settings(max_examples=200, deadline=None)
@given(current=nmr, wallet=nmr, scores=stake_inputs())
def test_no_stake_without_caps_never_changes_the_stake(current, wallet, scores):
    p = propose(NoStake(caps=NO_CAPS, mode="fixed"), current, wallet, scores)
    assert p.change == 0 and p.target == current and p.capped_by is None


@settings(max_examples=400, deadline=None)
@given(policy=policies, current=nmr, wallet=st.one_of(st.none(), nmr), locked=nmr,
       scores=stake_inputs())
def test_no_policy_proposes_a_round_stake_outside_the_caps(policy, current, wallet, locked,
                                                           scores):
    """ABS: the per-round stake and the NMR locked across the open rounds, on any input."""
    p = propose_round(policy, current, wallet, locked, scores)
    c = policy.caps
    tol = tolerance(current, wallet, locked, c.max_stake, c.max_locked, c.max_change,
                    c.min_wallet)
    assert (p.current, p.locked, p.wallet, p.mode) == (current, locked, wallet, policy.mode)
    assert math.isfinite(p.stake) and p.stake >= 0
    assert abs(p.change - (p.stake - current)) <= tol
    assert p.locked_after == locked + p.stake
    if c.max_stake is not None:
        assert p.stake <= c.max_stake + tol
    if c.max_locked is not None:
        assert p.locked_after <= max(c.max_locked, locked) + tol
        if locked >= c.max_locked:
            assert p.stake == 0  # no room left: nothing more is locked
    if wallet is not None:
        assert p.stake <= max(0.0, wallet - c.min_wallet) + tol
    else:
        assert "wallet unknown" in p.reason and p.capped_by != "min_wallet"
    if c.max_change is not None and abs(p.change) > c.max_change + tol:
        # only a ceiling may move it further, and only down
        assert p.change < 0 and p.capped_by in ("max_stake", "max_locked", "min_wallet")
    if p.capped_by is None:
        assert p.stake == (current if math.isnan(p.wish) else max(0.0, p.wish))


@settings(max_examples=200, deadline=None)
@given(current=nmr, wallet=nmr, locked=nmr, scores=stake_inputs())
def test_no_stake_without_caps_keeps_the_per_round_stake(current, wallet, locked, scores):
    p = propose_round(NoStake(caps=NO_CAPS, mode="fixed"), current, None, locked, scores)
    assert (p.stake, p.change, p.capped_by) == (current, 0.0, None)
    p = propose_round(NoStake(caps=NO_CAPS, mode="fixed"), current, wallet, locked, scores)
    assert p.stake == min(current, wallet)


# --- the caps, worked by hand -------------------------------------------------------------

NO_SCORES = StakeInputs()


@pytest.mark.parametrize(("current", "wallet", "cap", "expected", "capped_by"), [
    (40.0, 1000.0, caps(max_change=25.0), 65.0, "max_change"),        # +60 wished, 25 allowed
    (40.0, 30.0, caps(min_wallet=10.0), 60.0, "min_wallet"),          # wallet pays only 20
    (40.0, 5.0, caps(min_wallet=10.0), 40.0, "min_wallet"),           # wallet below min: 0
    (40.0, 1000.0, caps(max_stake=80.0), 80.0, "max_stake"),
    (40.0, 1000.0, caps(max_stake=150.0, max_change=100.0), 100.0, None),
    (130.0, 0.0, caps(max_change=20.0), 110.0, "max_change"),         # decreases need no wallet
    (130.0, 0.0, caps(), 100.0, None),
])
def test_fixed_stake_bounded_by_each_cap(current, wallet, cap, expected, capped_by):
    p = propose(FixedStake(stake=100.0, caps=cap, mode="fixed"), current, wallet, NO_SCORES)
    assert p.target == pytest.approx(expected)
    assert p.change == pytest.approx(expected - current)
    assert p.capped_by == capped_by
    assert p.wish == 100.0


@pytest.mark.parametrize(("current", "wallet", "locked", "cap", "expected", "capped_by"), [
    (40.0, 1000.0, 0.0, caps(max_change=25.0), 65.0, "max_change"),    # +60 wished
    (40.0, 1000.0, 0.0, caps(max_stake=80.0), 80.0, "max_stake"),
    (40.0, 1000.0, 450.0, caps(max_locked=500.0), 50.0, "max_locked"),  # 50 NMR of room
    (40.0, 1000.0, 600.0, caps(max_locked=500.0), 0.0, "max_locked"),   # already above it
    (40.0, 30.0, 0.0, caps(min_wallet=10.0), 20.0, "min_wallet"),       # the wallet pays 20
    (40.0, None, 0.0, caps(min_wallet=10.0), 100.0, None),              # wallet unknown
    (130.0, 0.0, 0.0, caps(), 0.0, "min_wallet"),                       # nothing to stake
    (130.0, 1000.0, 0.0, caps(max_change=20.0), 110.0, "max_change"),
    # a ceiling wins over max_change: 130 -> 100 in one decision
    (130.0, 1000.0, 0.0, caps(max_stake=100.0, max_change=20.0), 100.0, "max_stake"),
])
def test_a_fixed_round_stake_bounded_by_each_cap(current, wallet, locked, cap, expected,
                                                 capped_by):
    p = propose_round(FixedStake(stake=100.0, caps=cap, mode="compound"), current, wallet,
                      locked, NO_SCORES)
    assert p.stake == pytest.approx(expected) and p.change == pytest.approx(expected - current)
    assert (p.capped_by, p.wish, p.mode) == (capped_by, 100.0, "compound")
    assert ("wallet unknown" in p.reason) == (wallet is None)


def test_an_unknown_wallet_bounds_nothing_and_says_so():
    """numerapi may not report the wallet: a min_wallet of 0 must not read as a cap."""
    p = propose(FixedStake(stake=100.0, caps=caps(), mode="fixed"), 40.0, None, NO_SCORES)
    assert (p.target, p.capped_by, p.wallet) == (100.0, None, None)
    assert p.reason == "fixed target 100 NMR; wallet unknown"


def test_a_stake_above_max_stake_comes_down_by_at_most_max_change():
    p = propose(NoStake(caps=caps(max_stake=100.0, max_change=5.0), mode="fixed"), 120.0, 50.0,
                NO_SCORES)
    assert (p.target, p.change, p.capped_by) == (115.0, -5.0, "max_change")
    p = propose(FixedStake(stake=500.0, caps=caps(max_stake=100.0), mode="fixed"), 120.0, 50.0,
                NO_SCORES)
    assert (p.target, p.capped_by) == (100.0, "max_stake")  # a wish above never raises it


def test_negative_current_stake_or_wallet_is_refused():
    with pytest.raises(NumerlabError, match=r"^wallet=-1.0: must be a finite number >= 0"):
        propose(NoStake(caps=NO_CAPS, mode="fixed"), 10.0, -1.0, NO_SCORES)
    with pytest.raises(NumerlabError, match=r"^current_stake=nan"):
        propose(NoStake(caps=NO_CAPS, mode="fixed"), math.nan, 1.0, NO_SCORES)
    with pytest.raises(NumerlabError, match=r"^locked=-2.0: must be a finite number >= 0"):
        propose_round(NoStake(caps=NO_CAPS, mode="fixed"), 1.0, None, -2.0, NO_SCORES)


# --- policies, worked by hand -------------------------------------------------------------


def sharpe_scaled(**overrides) -> SharpeScaled:
    params = {"nmr_per_sharpe": 10.0, "min_sharpe": 0.5, "mmc_weight": 0.0, "min_eras": 2,
              "caps": NO_CAPS, "mode": "fixed", **overrides}
    return SharpeScaled(**params)


def test_sharpe_scaled_follows_its_formula():
    # CORR 0.01, 0.03: mean 0.02, std (ddof 0) 0.01 -> sharpe 2; MMC 0, 0.02: sharpe 1
    scores = StakeInputs(corr=[0.01, 0.03], mmc=[0.0, 0.02])
    assert sharpe_scaled().target(scores, 7.0) == pytest.approx(10.0 * (2.0 - 0.5))
    assert sharpe_scaled(mmc_weight=0.5).target(scores, 7.0) == pytest.approx(10.0 * 2.0)
    assert sharpe_scaled(min_sharpe=2.5).target(scores, 7.0) == 0.0      # below threshold
    # an MMC sharpe that cannot be computed (no known era) counts 0
    no_mmc = StakeInputs(corr=[0.01, 0.03], mmc=[math.nan, math.nan])
    assert sharpe_scaled(mmc_weight=0.5).target(no_mmc, 7.0) == pytest.approx(15.0)


def test_sharpe_scaled_holds_on_too_little_evidence_and_reads_summaries():
    assert sharpe_scaled(min_eras=3).target(StakeInputs(corr=[0.01, 0.03]), 7.0) == 7.0
    assert sharpe_scaled().target(StakeInputs(corr=[0.02, 0.02]), 7.0) == 7.0  # no spread
    summary = StakeInputs.from_metrics({"corr_sharpe": 1.5, "mmc_sharpe": None, "n_eras": 100})
    assert sharpe_scaled(mmc_weight=1.0).target(summary, 0.0) == pytest.approx(10.0)
    few = StakeInputs.from_metrics({"corr_sharpe": 1.5, "mmc_sharpe": 1.0, "n_eras": 1})
    assert sharpe_scaled().target(few, 3.0) == 3.0


def test_current_drawdown_is_from_the_running_peak_to_now():
    assert current_drawdown(np.array([])) == 0.0
    assert current_drawdown(np.array([-0.1])) == pytest.approx(0.1)  # the peak starts at 0
    assert current_drawdown(np.array([0.1, -0.3, 0.25])) == pytest.approx(0.05)
    assert current_drawdown(np.array([0.1, -0.3, 0.5])) == 0.0


def guard(**overrides) -> DrawdownGuard:
    params = {"max_drawdown": 0.15, "cut_fraction": 0.5, "base_target": None,
              "corr_weight": 1.0, "mmc_weight": 0.0, "caps": NO_CAPS, "mode": "fixed",
              **overrides}
    return DrawdownGuard(**params)


def test_drawdown_guard_cuts_beyond_the_limit_only():
    falling = StakeInputs(corr=[0.1, -0.2], mmc=[math.nan, 0.3])   # drawdown 0.2 on CORR
    assert guard().target(falling, 80.0) == pytest.approx(40.0)
    assert guard(base_target=60.0).target(falling, 80.0) == pytest.approx(30.0)
    assert guard(cut_fraction=1.0).target(falling, 80.0) == 0.0
    assert guard(max_drawdown=0.25).target(falling, 80.0) == 80.0
    assert guard(max_drawdown=0.25, base_target=60.0).target(falling, 80.0) == 60.0
    # MMC +0.3 in era 2 (weight 1) lifts the score to a new peak: no drawdown
    assert guard(mmc_weight=1.0).target(falling, 80.0) == 80.0
    assert guard().target(StakeInputs(), 80.0) == 80.0


# --- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Caps.from_config(caps(max_change=-1)),
     "staking.caps.max_change=-1 must be null or a number >= 0"),
    (lambda: Caps.from_config(caps(max_stake=math.inf)),
     "staking.caps.max_stake=inf must be null or a number >= 0"),
    (lambda: Caps.from_config(caps(min_wallet=None)),
     "staking.caps.min_wallet=None must be a number >= 0"),
    (lambda: Caps.from_config({**NO_CAPS, "max_stak": 3}),
     "staking.caps.max_stak is not a setting of staking.caps (did you mean "
     "staking.caps.max_stake? settings: max_stake, max_locked, max_change, min_wallet)"),
    (lambda: Caps.from_config({"max_stake": 1, "max_locked": 1, "max_change": 1}),
     "staking.caps.min_wallet is missing (settings: max_stake, max_locked, max_change, "
     "min_wallet)"),
    (lambda: Caps.from_config(caps(max_locked=-5)),
     "staking.caps.max_locked=-5 must be null or a number >= 0"),
    (lambda: FixedStake(stake="100", caps=NO_CAPS, mode="fixed"),
     "staking.stake='100' must be a number"),
    (lambda: FixedStake(stake=True, caps=NO_CAPS, mode="fixed"),
     "staking.stake=True must be a number"),
    (lambda: FixedStake(stake=1, caps=NO_CAPS, mode="constant"),
     "staking.mode='constant' is unknown (allowed: fixed, compound)"),
    (lambda: sharpe_scaled(min_eras=1), "staking.min_eras=1 must be an integer >= 2"),
    (lambda: sharpe_scaled(min_eras=2.5), "staking.min_eras=2.5 must be an integer >= 2"),
    (lambda: sharpe_scaled(min_sharpe=-0.1), "staking.min_sharpe=-0.1 must be a number >= 0"),
    (lambda: guard(cut_fraction=0), "staking.cut_fraction=0 must be a number > 0 and <= 1"),
    (lambda: guard(cut_fraction=1.5), "staking.cut_fraction=1.5 must be a number > 0 and <= 1"),
    (lambda: guard(max_drawdown=0), "staking.max_drawdown=0 must be a number > 0"),
    (lambda: guard(corr_weight=0),
     "staking.corr_weight=0 and staking.mmc_weight=0: at least one must be > 0"),
])
def test_bad_config_values_fail_in_one_line_naming_the_key(build, message):
    with pytest.raises(NumerlabError) as error:
        build()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_bad_value_in_a_yaml_surfaces_through_hydra_instantiate():
    cfg = compose(["staking=fixed", "staking.caps.max_change=-1"]).staking
    with pytest.raises(InstantiationException,
                       match=r"staking.caps.max_change=-1 must be null or a number >= 0"):
        instantiate(cfg)


def test_build_policy_unwraps_config_errors_and_checks_the_type():
    cfg = compose(["staking=sharpe_scaled"]).staking
    assert isinstance(build_policy(cfg), SharpeScaled)
    cfg.min_sharpe = -2
    with pytest.raises(NumerlabError, match=r"^staking.min_sharpe=-2 must be a number >= 0$"):
        build_policy(cfg)
    with pytest.raises(NumerlabError,
                       match=r"^staking._target_=numerlab.staking.Caps is not a StakePolicy"):
        build_policy(OmegaConf.create({"_target_": "numerlab.staking.Caps", **NO_CAPS}))
    with pytest.raises(NumerlabError,
                       match=r"^staking._target_=numerlab.staking.Nope cannot be imported"):
        build_policy(OmegaConf.create({"_target_": "numerlab.staking.Nope"}))


def test_stake_inputs_from_a_per_era_table_in_era_order():
    import polars as pl

    table = pl.DataFrame({"era": ["0003", "0001"], "corr": [0.3, 0.1], "mmc": [None, 0.2]})
    scores = StakeInputs.from_per_era(table)
    assert scores.corr.tolist() == [0.1, 0.3]
    assert scores.mmc[0] == 0.2 and math.isnan(scores.mmc[1])
    assert np.isnan(StakeInputs.from_per_era(table.drop("mmc")).mmc).all()


def test_the_guard_weighs_scores_by_the_payout_multipliers_of_the_run():
    """drawdown_guard's weights are conf/payout/'s multipliers, not a copy of them."""
    cfg = compose(["staking=drawdown_guard", "payout.corr_mult=0.5", "payout.mmc_mult=3.0"])
    policy = build_policy(cfg.staking)
    assert (policy.corr_weight, policy.mmc_weight) == (0.5, 3.0)


def test_policies_share_one_caps_default():
    default = OmegaConf.to_container(compose([]).staking.caps)  # staking=none: no caps
    assert Caps.from_config(default) == Caps(None, None, None, 0.0)
    shared = [OmegaConf.to_container(compose([f"staking={name}"]).staking.caps)
              for name in ("fixed", "sharpe_scaled", "drawdown_guard")]
    assert shared[0] == shared[1] == shared[2] != default
    assert compose(["staking=fixed", "staking/caps=none"]).staking.caps == default
