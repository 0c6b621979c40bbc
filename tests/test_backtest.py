"""Payout backtest: the payout rule, compounding at resolution, no lookahead, the conf files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import compose
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from numerlab.backtest import (
    AbsPayoutRule,
    PayoutRule,
    payout_rule,
    plot,
    simulate,
    simulate_abs,
    summary,
    worst_drawdown,
)
from numerlab.errors import NumerlabError
from numerlab.staking import FixedStake, NoStake, SharpeScaled, StakePolicy, build_policy

CONF = Path(__file__).resolve().parents[1] / "conf"
NO_CAPS = {"max_stake": None, "max_locked": None, "max_change": None, "min_wallet": 0.0}
STAKING_OPTIONS = {"none", "fixed", "sharpe_scaled", "drawdown_guard"}


def rule(**overrides) -> dict:
    """A v2 rule (the legacy continuous stake)."""
    return {"rule": "v2", "corr_mult": 0.75, "mmc_mult": 2.25, "clip": 0.05,
            "payout_factor": 1.0, "resolution_lag_eras": 0, **overrides}


def abs_rule(**overrides) -> dict:
    """An ABS rule: per position, clip 1."""
    return {"rule": "abs", "corr_mult": 1.0, "mmc_mult": 2.0, "multipliers_from": "config",
            "clip": 1.0, "payout_factor": 1.0, "resolution_eras": None, **overrides}


def eras(corr, mmc=None) -> pl.DataFrame:
    frame = {"era": [f"{i + 1:04d}" for i in range(len(corr))], "corr": corr}
    if mmc is not None:
        frame["mmc"] = pl.Series(mmc, dtype=pl.Float64)
    return pl.DataFrame(frame)


def hold() -> NoStake:
    return NoStake(caps=NO_CAPS, mode="fixed")


# --- the payout rule ----------------------------------------------------------------------


@pytest.mark.parametrize(("corr", "mmc", "payout_rule", "expected"), [
    (0.02, 0.01, rule(), 100 * (0.75 * 0.02 + 2.25 * 0.01)),            # 3.75 NMR
    (0.02, None, rule(), 100 * 0.75 * 0.02),                            # no MMC: counts 0
    (0.02, 0.01, rule(corr_mult=0.5, mmc_mult=2.0), 100 * (0.5 * 0.02 + 2.0 * 0.01)),
    (0.02, 0.01, rule(payout_factor=0.5), 100 * 0.5 * (0.75 * 0.02 + 2.25 * 0.01)),
    (0.10, 0.00, rule(), 100 * 0.05),                                   # clipped up
    (-0.10, -0.01, rule(), -100 * 0.05),                                # clipped down
    (0.10, 0.00, rule(clip=0.2), 100 * 0.075),                          # inside a wider clip
])
def test_one_era_payout_is_numerais_rule(corr, mmc, payout_rule, expected):
    sim = simulate(eras([corr], [mmc]), hold(), payout_rule, initial_stake=100.0)
    assert sim["payout"][0] == pytest.approx(expected)
    assert sim["stake"][0] == 100.0


def test_mmc_column_may_be_absent():
    sim = simulate(eras([0.02, 0.04]), hold(), rule(), initial_stake=10.0)
    assert sim["payout"].to_list() == pytest.approx([10 * 0.015, 10.15 * 0.03])


# --- compounding and resolution lag -------------------------------------------------------


def test_payouts_compound_into_the_next_round_without_lag():
    corr = [0.02, -0.01, 0.04, 0.01]
    sim = simulate(eras(corr), hold(), rule(), initial_stake=100.0)
    stake, expected = 100.0, []
    for c in corr:
        expected.append(stake)
        stake *= 1 + 0.75 * c
    assert sim["stake"].to_list() == pytest.approx(expected)
    assert sim["settled_stake"][-1] == pytest.approx(stake)
    assert sim["cumulative"][-1] == pytest.approx(stake - 100.0)


def test_payouts_reach_the_stake_only_once_they_resolve():
    corr, lag = [0.02, -0.01, 0.04, 0.01, 0.03, 0.0], 2
    sim = simulate(eras(corr), hold(), rule(resolution_lag_eras=9), initial_stake=100.0,
                   resolution_lag_eras=lag)
    stakes, payouts = [], []
    for t, c in enumerate(corr):  # era s pays at round s + lag + 1
        stakes.append(100.0 + sum(payouts[: max(0, t - lag)]))
        payouts.append(stakes[-1] * 0.75 * c)
    assert sim["stake"].to_list() == pytest.approx(stakes)
    assert sim["stake"][: lag + 1].to_list() == [100.0] * (lag + 1)
    assert sim["resolved_eras"].to_list() == [0, 0, 0, 1, 2, 3]
    assert sim["settled_stake"][-1] == pytest.approx(100.0 + sum(payouts))


def test_losses_beyond_the_stake_come_from_the_wallet_and_no_further():
    # clip 1: two unresolved rounds each lose 80% of 100 NMR, more than the stake holds
    sim = simulate(eras([-0.8, -0.8, 0.0, 0.0]), hold(),
                   rule(corr_mult=1.0, clip=1.0, resolution_lag_eras=1), initial_stake=100.0,
                   wallet=50.0)
    assert sim["stake"].to_list() == pytest.approx([100.0, 100.0, 20.0, 0.0])
    assert sim["wallet"].to_list() == pytest.approx([50.0, 50.0, 50.0, 0.0])
    assert sim["equity"][-1] == 0.0


def test_summary_of_a_hand_worked_run():
    # +5% (clipped) then -5% (clipped) of a compounding stake: 100 -> 105 -> 99.75
    sim = simulate(eras([0.2, -0.2]), hold(), rule(), initial_stake=100.0)
    assert summary(sim) == pytest.approx({
        "final_stake": 99.75, "capital": 100.0, "total_return": -0.0025,
        "worst_drawdown": (105.0 - 99.75) / 105.0, "total_payout": -0.25, "n_eras": 2})


def test_worst_drawdown_is_a_fraction_of_the_running_peak():
    assert worst_drawdown(np.array([110.0, 55.0, 120.0, 90.0]), 100.0) == pytest.approx(0.5)
    assert worst_drawdown(np.array([90.0]), 100.0) == pytest.approx(0.1)  # from the start
    assert worst_drawdown(np.array([100.0, 101.0]), 100.0) == 0.0


# --- no lookahead -------------------------------------------------------------------------


def conf_policy(name: str, **overrides) -> StakePolicy:
    """The policy of conf/staking/<name>.yaml with `staking.<key>=<value>` overrides."""
    cfg = compose([f"staking={name}", *(f"staking.{k}={v}" for k, v in overrides.items())])
    return build_policy(cfg.staking)


LOOKAHEAD_POLICIES = {
    "none": conf_policy("none"),
    "fixed": conf_policy("fixed", **{"stake": 150.0, "caps.max_change": 7.0}),
    "sharpe_scaled": conf_policy("sharpe_scaled", min_eras=2, min_sharpe=0.0),
    "drawdown_guard": conf_policy("drawdown_guard", max_drawdown=0.01, base_target=120.0),
}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 24), lag=st.integers(0, 5),
       data=st.data(), name=st.sampled_from(sorted(LOOKAHEAD_POLICIES)))
def test_an_eras_scores_never_move_a_stake_before_they_resolve(seed, n, lag, data, name):
    rng = np.random.default_rng(seed)
    corr, mmc = rng.normal(0.005, 0.03, n), rng.normal(0.0, 0.01, n)
    t = data.draw(st.integers(0, n - 1))
    changed_corr, changed_mmc = corr.copy(), mmc.copy()
    changed_corr[t], changed_mmc[t] = data.draw(st.floats(-0.5, 0.5)), math.nan
    policy = LOOKAHEAD_POLICIES[name]
    before = simulate(eras(corr, mmc), policy, rule(), 100.0, 500.0, resolution_lag_eras=lag)
    after = simulate(eras(changed_corr, changed_mmc), policy, rule(), 100.0, 500.0,
                     resolution_lag_eras=lag)
    seen = t + lag + 1
    for column in ("stake", "wallet", "proposed_change", "wish"):
        assert after[column][:seen].to_list() == before[column][:seen].to_list()


def test_an_eras_scores_do_move_the_stake_once_resolved():
    corr, lag = [0.01, 0.02, 0.0, 0.0, 0.0], 2
    before = simulate(eras(corr), hold(), rule(), 100.0, resolution_lag_eras=lag)
    after = simulate(eras([0.01, -0.02, 0.0, 0.0, 0.0]), hold(), rule(), 100.0,
                     resolution_lag_eras=lag)
    assert before["stake"][:4].to_list() == after["stake"][:4].to_list()
    assert before["stake"][4] == pytest.approx(after["stake"][4] + 100.0 * 0.75 * 0.04)


def test_eras_are_replayed_in_era_order():
    frame = eras([0.02, -0.03, 0.01], [0.0, 0.01, None])
    shuffled = frame[[2, 0, 1]]
    policy = conf_policy("sharpe_scaled", min_eras=2)
    assert simulate(shuffled, policy, rule(), 50.0, 10.0).equals(
        simulate(frame, policy, rule(), 50.0, 10.0))


# --- Atomic Blockchain Staking: a position per era ----------------------------------------


def fixed_per_round(stake: float, mode: str = "fixed", **caps) -> FixedStake:
    return FixedStake(stake=stake, caps={**NO_CAPS, **caps}, mode=mode)


HAND_CORR = [0.1, -0.2, 0.3, 0.0, 0.0]  # payout score = CORR (corr_mult 1, no MMC)


def test_abs_positions_resolve_after_the_horizon_in_fixed_mode():
    # 10 NMR a round, 2 eras to resolve, 20 NMR to start: era 3's stake is cut to the 9 the
    # wallet holds once era 1's position came back at a 20% loss
    sim = simulate_abs(eras(HAND_CORR), fixed_per_round(10.0), abs_rule(), 10.0, 20.0, 2)
    assert sim["stake"].to_list() == pytest.approx([10, 10, 10, 9, 10])
    assert sim["capped_by"].to_list() == [None, None, None, "min_wallet", None]
    assert sim["resolved_payout"].to_list() == pytest.approx([0, 0, 1, -2, 3])
    assert sim["locked"].to_list() == pytest.approx([10, 20, 20, 19, 19])
    assert sim["wallet"].to_list() == pytest.approx([10, 0, 1, 0, 3])
    assert sim["resolved_eras"].to_list() == [0, 0, 1, 2, 3]
    assert sim["equity"][-1] == pytest.approx(3 + 9 + 10)  # every open position resolved
    assert summary(sim) == pytest.approx({
        "final_stake": 10.0, "capital": 20.0, "total_return": 0.1,
        "worst_drawdown": (21 - 19) / 21, "total_payout": 2.0, "n_eras": 5,
        "peak_locked": 20.0})


def test_abs_compound_mode_restakes_a_larger_resolved_value():
    sim = simulate_abs(eras(HAND_CORR), fixed_per_round(10.0, "compound"), abs_rule(), 10.0,
                       20.0, 2)
    # era 2: 11 came back and is restaked; era 3: 8 came back, below the per-round stake,
    # and the wallet holds only 8; era 4: 11 * 1.3 = 14.3 came back and is restaked
    assert sim["stake"].to_list() == pytest.approx([10, 10, 11, 8, 14.3])
    assert sim["per_round_stake"].to_list() == pytest.approx([10, 10, 10, 8, 10])
    assert sim["mode"].unique().to_list() == ["compound"]
    capped = simulate_abs(eras(HAND_CORR), fixed_per_round(10.0, "compound", max_stake=10.5),
                          abs_rule(), 10.0, 20.0, 2)
    assert capped["stake"][2] == 10.5 and capped["capped_by"][2] == "max_stake"


def test_an_abs_position_loses_at_most_its_stake():
    sim = simulate_abs(eras([-3.0, -3.0, 0.5]), fixed_per_round(50.0), abs_rule(), 50.0,
                       100.0, 1)
    assert sim["resolved_payout"].to_list() == pytest.approx([0, -50, -50])
    assert sim["stake"].to_list() == pytest.approx([50, 50, 0])  # nothing left to stake
    assert sim["equity"][-1] == 0.0 and (sim["holdings"] >= 0).all()


caps_strategy = st.fixed_dictionaries({
    "max_stake": st.one_of(st.none(), st.floats(0, 200)),
    "max_locked": st.one_of(st.none(), st.floats(0, 600)),
    "max_change": st.one_of(st.none(), st.floats(0, 80)),
    "min_wallet": st.floats(0, 100)})


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), horizon=st.integers(1, 6),
       caps=caps_strategy, mode=st.sampled_from(["fixed", "compound"]),
       wish=st.floats(0, 300), initial=st.floats(0, 150), wallet=st.floats(0, 1000),
       sharpe=st.booleans())
def test_abs_backtest_keeps_the_caps_at_every_era(seed, n, horizon, caps, mode, wish, initial,
                                                  wallet, sharpe):
    """Per-round stakes and the NMR locked across the open rounds, era by era."""
    rng = np.random.default_rng(seed)
    per_era = eras(rng.normal(0.01, 0.2, n), rng.normal(0.0, 0.05, n))
    policy = (SharpeScaled(nmr_per_sharpe=wish, min_sharpe=0.0, mmc_weight=0.5, min_eras=2,
                           caps=caps, mode=mode) if sharpe
              else FixedStake(stake=wish, caps=caps, mode=mode))
    sim = simulate_abs(per_era, policy, abs_rule(), initial, wallet, horizon)
    tol = 1e-9 * max(1.0, wallet, initial, wish)
    stake, locked, cash = (sim[c].to_numpy() for c in ("stake", "locked", "wallet"))
    assert (stake >= 0).all() and (cash >= -tol).all()
    if caps["max_stake"] is not None:
        assert (stake <= caps["max_stake"] + tol).all()
    if caps["max_locked"] is not None:
        assert (locked <= caps["max_locked"] + tol).all()
    assert ((stake == 0) | (cash >= caps["min_wallet"] - tol)).all()
    for t in range(n):  # locked = the positions of the last `horizon` eras
        assert locked[t] == pytest.approx(stake[max(0, t - horizon + 1): t + 1].sum(), abs=tol)
    assert sim["equity"][-1] == pytest.approx(wallet + sim["position_payout"].sum(), abs=tol)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 24), horizon=st.integers(1, 6),
       data=st.data(), name=st.sampled_from(sorted(LOOKAHEAD_POLICIES)),
       mode=st.sampled_from(["fixed", "compound"]))
def test_an_abs_positions_score_moves_nothing_before_it_resolves(seed, n, horizon, data, name,
                                                                 mode):
    rng = np.random.default_rng(seed)
    corr, mmc = rng.normal(0.005, 0.03, n), rng.normal(0.0, 0.01, n)
    t = data.draw(st.integers(0, n - 1))
    changed_corr, changed_mmc = corr.copy(), mmc.copy()
    changed_corr[t], changed_mmc[t] = data.draw(st.floats(-0.5, 0.5)), math.nan
    base = LOOKAHEAD_POLICIES[name]
    policy = type(base)(**{**vars(base), "mode": mode})
    before = simulate_abs(eras(corr, mmc), policy, abs_rule(), 100.0, 800.0, horizon)
    after = simulate_abs(eras(changed_corr, changed_mmc), policy, abs_rule(), 100.0, 800.0,
                         horizon)
    seen = t + horizon  # era t's position resolves in era t + horizon
    for column in ("stake", "per_round_stake", "wallet", "locked", "wish"):
        assert after[column][:seen].to_list() == before[column][:seen].to_list()


# --- the conf files -----------------------------------------------------------------------


def test_every_staking_option_instantiates_and_backtests():
    files = sorted((CONF / "staking").glob("*.yaml"))
    assert STAKING_OPTIONS <= {f.stem for f in files}
    payout = OmegaConf.load(CONF / "payout" / "v2.yaml")
    assert payout_rule(payout) == PayoutRule(0.75, 2.25, 0.05, 1.0, 4)
    abs_payout = OmegaConf.load(CONF / "payout" / "abs.yaml")
    assert payout_rule(abs_payout) == AbsPayoutRule(5.0, 10.0, "api", 1.0, 1.0, None)
    assert compose([]).payout.rule == "abs"  # the default
    rng = np.random.default_rng(0)
    per_era = eras(rng.normal(0.01, 0.02, 30), rng.normal(0.0, 0.01, 30))
    for path in files:
        policy = build_policy(compose([f"staking={path.stem}"]).staking)
        assert isinstance(policy, StakePolicy), path.name
        sim = simulate(per_era, policy, payout, initial_stake=100.0, wallet=100.0)
        assert sim.height == 30 and (sim["stake"] >= 0).all(), path.name
        sim = simulate_abs(per_era, policy, abs_payout, 100.0, 400.0, resolution_eras=4)
        assert sim.height == 30 and (sim["stake"] >= 0).all(), path.name


def test_plot_writes_a_png_comparing_two_runs(tmp_path):
    per_era = eras([0.02, -0.01, 0.03, 0.0])
    policy = conf_policy("fixed", stake=40.0)
    fixed = simulate(per_era, hold(), rule(), 100.0, 0.0)
    out = plot(simulate(per_era, policy, rule(), 100.0, 0.0), fixed, tmp_path / "p" / "b.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NumerlabError, match="different eras"):
        plot(fixed[:2], fixed, tmp_path / "c.png")
    positions = simulate_abs(per_era, policy, abs_rule(), 10.0, 40.0, 2)
    out = plot(positions, simulate_abs(per_era, hold(), abs_rule(), 10.0, 40.0, 2),
               tmp_path / "abs.png")  # with the NMR locked
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "message"), [
    (rule(clip=1.5), "payout.clip=1.5 must be a number within [0, 1]"),
    (rule(corr_mult=-0.5), "payout.corr_mult=-0.5 must be a number >= 0"),
    (rule(resolution_lag_eras=-1), "payout.resolution_lag_eras=-1 must be an integer >= 0"),
    ({**rule(), "mmc_mul": 2.0}, "payout.mmc_mul is not a setting of payout (did you mean "
                                 "payout.mmc_mult? settings: rule, corr_mult, mmc_mult"),
    ({k: v for k, v in rule().items() if k != "clip"},
     "payout.clip is missing (settings: rule, corr_mult, mmc_mult, clip"),
    ({k: v for k, v in rule().items() if k != "rule"}, "payout.rule is missing"),
    (rule(rule="v3"), "payout.rule='v3' is unknown (allowed: abs, v2)"),
    (abs_rule(resolution_eras=0), "payout.resolution_eras=0 must be an integer >= 1"),
    (abs_rule(multipliers_from="web"),
     "payout.multipliers_from='web' is unknown (allowed: api, config)"),
    ({**abs_rule(), "resolution_lag_eras": 4},
     "payout.resolution_lag_eras is not a setting of payout"),
])
def test_bad_payout_config_fails_in_one_line_naming_the_key(bad, message):
    with pytest.raises(NumerlabError) as error:
        payout_rule(bad)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(("per_era", "message"), [
    (pl.DataFrame({"era": ["0001"], "mmc": [0.0]}), "per-era scores: no `corr` column"),
    (eras([0.01, None]), "per-era scores: corr is null/NaN in era '0002'"),
    (pl.DataFrame({"era": ["0001", "0001"], "corr": [0.0, 0.1]}),
     "per-era scores: era '0001' appears more than once"),
    (eras([]), "per-era scores: no eras to backtest"),
])
def test_bad_per_era_scores_fail_in_one_line(per_era, message):
    with pytest.raises(NumerlabError, match=f"^{message}"):
        simulate(per_era, hold(), rule(), 1.0)


def test_rounds_replay_in_era_number_order_whatever_the_labels():
    # "era10" sorts before "era9" as text: the replay must still run 8, 9, 10, 11
    labels = ["era10", "era8", "era11", "era9"]
    corr = {"era8": 0.01, "era9": -0.02, "era10": 0.03, "era11": 0.005}
    frame = pl.DataFrame({"era": labels, "corr": [corr[e] for e in labels]})
    sim = simulate(frame, hold(), rule(resolution_lag_eras=0), initial_stake=100.0)
    assert sim["era"].to_list() == ["era8", "era9", "era10", "era11"]
    expected = simulate(pl.DataFrame({"era": ["era8", "era9", "era10", "era11"],
                                      "corr": [0.01, -0.02, 0.03, 0.005]}),
                        hold(), rule(resolution_lag_eras=0), initial_stake=100.0)
    assert sim.equals(expected)
