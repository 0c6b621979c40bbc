"""Live scores: numerapi's `submission_scores` over HTTP to the fake Numerai, into the
history, and live against validation (numbers checked with numerai-tools and numpy)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY
from numerai_tools.scoring import sharpe_ratio

from numerlab import live_results
from numerlab.history import SENT, History
from numerlab.tournament import RetryPolicy, TournamentClient

POLICY = RetryPolicy(timeout_s=10, max_attempts=3, backoff_s=0.01, breaker_threshold=10,
                     breaker_reset_s=60)


@pytest.fixture
def client(fake_numerai) -> TournamentClient:
    return TournamentClient(fake_numerai.url, PUBLIC_ID, SECRET_KEY, policy=POLICY)


@pytest.fixture
def store(tmp_path) -> History:
    return History(tmp_path / "history.sqlite")


def validation_run(tmp_path: Path, **metrics: float) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def submitted(store: History, model: str, run_dir: Path) -> None:
    store.begin_submission(1000, model, run_dir=str(run_dir), config_hash="c",
                           sha256="s", status=SENT)


def test_scores_are_fetched_over_numerapi_and_a_second_refresh_adds_nothing(
        fake_numerai, client, store):
    fake_numerai.add_model("my_model")
    for number, value in ((1001, 0.01), (1002, -0.02)):
        fake_numerai.scores.add("my_model", number, "canon_corr", value / 2, day=10)
        fake_numerai.scores.add("my_model", number, "canon_corr", value, day=20, resolved=True)
        fake_numerai.scores.add("my_model", number, "mmc", value / 4, day=20, resolved=True)
    fake_numerai.scores.add("my_model", 1002, "payout", 0.5, day=20, resolved=True)

    new = live_results.refresh_scores(client, store, ["my_model"])

    assert sorted((s.round, s.name, s.value, s.day, s.resolved) for s in new) == [
        (1001, "canon_corr", 0.01, 20, True), (1001, "mmc", 0.0025, 20, True),
        (1002, "canon_corr", -0.02, 20, True), (1002, "mmc", -0.005, 20, True)]
    assert live_results.refresh_scores(client, store, ["my_model"]) == []
    asked = [r for r in fake_numerai.state.requests if r.operation == "submissionScores"]
    assert asked and all(r.variables["distinctOnRound"] is True
                         and r.variables["tournament"] == 8 for r in asked)
    assert "Authorization" not in asked[0].headers  # numerapi sends it without keys
    assert {r.variables["displayName"] for r in asked} >= {"canon_corr", "mmc", "bmc"}


def test_an_unresolved_round_then_its_resolution_lands(fake_numerai, client, store):
    fake_numerai.add_model("my_model")
    fake_numerai.scores.add("my_model", 1001, "canon_corr", 0.005, day=3)
    [first] = live_results.refresh_scores(client, store, ["my_model"])
    assert (first.value, first.resolved) == (0.005, False)
    frame = live_results.per_round(store, "my_model")
    assert frame["resolved"].to_list() == [False] and frame["cum_corr"].to_list() == [None]
    [view] = live_results.live_vs_validation(store, ["my_model"])
    assert (view.n_rounds, view.pending, view.live["corr_mean"]) == (0, 1, None)

    fake_numerai.scores.add("my_model", 1001, "canon_corr", 0.015, day=20, resolved=True)
    [later] = live_results.refresh_scores(client, store, ["my_model"])
    assert (later.value, later.day, later.resolved) == (0.015, 20, True)
    [view] = live_results.live_vs_validation(store, ["my_model"])
    assert (view.n_rounds, view.pending, view.live["corr_mean"]) == (1, 0, 0.015)


def test_per_round_prefers_the_canonical_name_and_sums_resolved_rounds(
        fake_numerai, client, store):
    fake_numerai.add_model("m")
    rows = [(1001, 0.02, 0.01, True), (1002, -0.01, None, True), (1003, 0.03, 0.02, True),
            (1004, 0.05, 0.00, False)]
    for number, corr, mmc, resolved in rows:
        fake_numerai.scores.add("m", number, "canon_corr", corr, resolved=resolved)
        fake_numerai.scores.add("m", number, "v2_corr20", 9.0, resolved=resolved)
        if mmc is not None:
            fake_numerai.scores.add("m", number, "mmc", mmc, resolved=resolved)
    live_results.refresh_scores(client, store, ["m"])
    frame = live_results.per_round(store, "m")
    assert frame["round"].to_list() == [1001, 1002, 1003, 1004]
    assert frame["corr"].to_list() == [0.02, -0.01, 0.03, 0.05]
    assert frame["resolved"].to_list() == [True, True, True, False]
    assert frame["cum_corr"].to_list()[:3] == pytest.approx([0.02, 0.01, 0.04])
    assert frame["cum_corr"].to_list()[3] is None
    assert frame["cum_mmc"].to_list()[:3] == pytest.approx([0.01, 0.01, 0.03])
    assert frame["cum_bmc"].to_list() == [None] * 4


def expected_live(values: list[float]) -> dict[str, float]:
    """mean, numerai-tools sharpe, and the max drawdown of the cumulative sum (from 0),
    computed here by hand."""
    series = pd.Series(values)
    peak, total, worst = 0.0, 0.0, 0.0
    for value in values:
        total += value
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return {"mean": float(np.mean(values)), "sharpe": float(sharpe_ratio(series)),
            "drawdown": worst}


def test_live_outside_the_validation_range_is_flagged(fake_numerai, client, store, tmp_path):
    fake_numerai.add_model("bad")
    live = [-0.01, -0.02, 0.0, -0.015]
    for number, value in enumerate(live, start=1001):
        fake_numerai.scores.add("bad", number, "canon_corr", value, resolved=True)
        fake_numerai.scores.add("bad", number, "mmc", 0.001 * (number - 1000), resolved=True)
    fake_numerai.scores.add("bad", 1005, "canon_corr", 0.5, day=2)  # pending: not counted
    run_dir = validation_run(tmp_path, corr_mean=0.02, corr_std=0.02, corr_sharpe=1.0,
                             corr_max_drawdown=0.03, mmc_mean=0.0025, mmc_std=0.01,
                             mmc_sharpe=0.25, bmc_mean=0.001)
    submitted(store, "bad", run_dir)
    live_results.refresh_scores(client, store, ["bad"])

    [view] = live_results.live_vs_validation(store)
    expected = expected_live(live)
    # validation range of a mean of 4 rounds: 0.02 +/- 2 * 0.02 / sqrt(4) = [0.0, 0.04]
    low, high = 0.02 - 2 * 0.02 / math.sqrt(4), 0.02 + 2 * 0.02 / math.sqrt(4)
    assert expected["mean"] < low
    assert (view.model, view.run_dir, view.n_rounds, view.pending) == (
        "bad", str(run_dir), 4, 1)
    assert view.live["corr_mean"] == pytest.approx(expected["mean"])
    assert view.live["corr_sharpe"] == pytest.approx(expected["sharpe"])
    assert view.live["corr_max_drawdown"] == pytest.approx(expected["drawdown"])
    assert view.live["mmc_mean"] == pytest.approx(0.0025)
    assert view.validation == {"corr_mean": 0.02, "corr_sharpe": 1.0,
                               "corr_max_drawdown": 0.03, "mmc_mean": 0.0025,
                               "mmc_sharpe": 0.25, "bmc_mean": 0.001}
    assert view.flags == [
        f"live CORR mean {expected['mean']:+.4f} over 4 resolved rounds is below the "
        f"validation range [{low:+.4f}, {high:+.4f}]",
        f"live CORR max drawdown {expected['drawdown']:.4f} exceeds validation's 0.0300"]


def test_live_inside_the_validation_range_is_not_flagged(fake_numerai, client, store,
                                                        tmp_path):
    fake_numerai.add_model("good")
    # mean 0.035, near the top of validation's range [0.0, 0.04] for 4 rounds
    for number, value in enumerate([0.03, 0.04, 0.035, 0.035], start=1001):
        fake_numerai.scores.add("good", number, "canon_corr", value, resolved=True)
    run_dir = validation_run(tmp_path, corr_mean=0.02, corr_std=0.02, corr_sharpe=1.0,
                             corr_max_drawdown=0.03)
    submitted(store, "good", run_dir)
    live_results.refresh_scores(client, store, ["good"])
    [view] = live_results.live_vs_validation(store, ["good"])
    assert view.n_rounds == 4 and view.flags == []
    assert view.live["corr_mean"] == pytest.approx(0.035)


def test_a_mean_above_the_range_is_flagged_too(store, tmp_path):
    from numerlab.history import Score

    store.upsert_scores([Score("hot", 1001 + i, "canon_corr", 0.09, resolved=True)
                         for i in range(9)])
    submitted(store, "hot", validation_run(tmp_path, corr_mean=0.02, corr_std=0.03))
    [view] = live_results.live_vs_validation(store)
    # 0.02 +/- 2 * 0.03 / 3 = [-0.0, 0.04]; 0.09 is above; no drawdown in validation's file
    assert view.flags == ["live CORR mean +0.0900 over 9 resolved rounds is above the "
                          "validation range [+0.0000, +0.0400]"]
