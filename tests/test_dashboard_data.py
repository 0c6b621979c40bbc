"""What the dashboard's panels read (numerlab.dashboard.data), against rows and run dirs we
wrote ourselves: the leaderboard is numerlab.summary's ranking of every run under the runs
roots (sweeps included), the models' positions read as task=status reads a book, the
offline round follows the weekday schedule, bad settings are one line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from conftest import compose
from dashboard_world import MODELS, NOW, ROUND, write_history, write_runs

from numerlab import summary
from numerlab.dashboard import data
from numerlab.errors import NumerlabError


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with time_machine.travel(NOW, tick=False):
        runs = write_runs(tmp_path)
        store = write_history(tmp_path / "history.sqlite", runs)
    return tmp_path, runs, store


def config(*overrides: str):
    return compose(["task=dashboard", *overrides])


def test_the_leaderboard_ranks_every_run_under_the_roots_as_the_summary_does(world):
    root, runs, _ = world
    view = data.runs_view(["outputs", "multirun", "absent"], "corr_sharpe", "maximize")
    names = view.frame["name"].to_list()
    # corr_sharpe as written: xgboost 1.35, lgbm 1.10, the sweep's job 0.95, cv 0.80; the
    # failed sweep job last
    assert names == ["outputs/2026-12-07/11-00-00-xgboost", "outputs/2026-12-07/10-00-00-lgbm",
                     "multirun/2026-12-06/09-00-00/0-lgbm",
                     "outputs/2026-12-07/12-00-00-cv-lgbm",
                     "multirun/2026-12-06/09-00-00/1-lgbm"]
    assert view.frame["rank"].to_list() == [1, 2, 3, 4, None]
    assert view.frame["status"].to_list()[-1] == summary.FAILED
    # the summary's own ranking of the sweep alone puts its jobs in the same order
    sweep = summary.rank(summary.collect(root / "multirun/2026-12-06/09-00-00"),
                         "corr_sharpe")
    assert [n.rsplit("/", 1)[-1] for n in names if n.startswith("multirun")] == \
        sweep["name"].to_list()
    assert view.frame["eras"].to_list()[:4] == ["12 eras 0575–0586"] * 4
    assert view.frame["model"].to_list()[:2] == ["xgboost", "lgbm"]
    assert "corr_mean" in view.metrics and "eras" not in view.metrics


def test_sorting_by_another_metric_and_direction(world):
    view = data.runs_view(["outputs"], "corr_sharpe", "maximize")
    by_mean = data.rerank(view, "corr_mean", "minimize")
    # corr_mean as written: cv 0.015 < xgboost 0.018 < lgbm 0.021
    assert [n.rsplit("-", 1)[-1] for n in by_mean.frame["name"].to_list()] == \
        ["lgbm", "xgboost", "lgbm"]
    assert by_mean.frame["name"].to_list()[0].endswith("cv-lgbm")


@pytest.mark.parametrize(("text", "expected"), [
    ("model=xgboost", ["11-00-00-xgboost"]),
    ("task=cv", ["12-00-00-cv-lgbm"]),
    ("model=lgbm task=train", ["10-00-00-lgbm", "0-lgbm"]),
    ("num_leaves", ["0-lgbm", "1-lgbm"]),
])
def test_filtering_by_model_task_and_words(world, text, expected):
    view = data.runs_view(["outputs", "multirun"], "corr_sharpe", "maximize")
    names = data.filter_runs(view.frame, text)["name"].to_list()
    assert [n.rsplit("/", 1)[-1] for n in names] == expected


def test_no_runs_is_no_leaderboard_not_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    view = data.runs_view(["outputs", "multirun"], "corr_sharpe", "maximize")
    assert view.frame is None and view.errors == []


def test_models_read_the_history_this_round_and_positions_as_a_book(world):
    _, _, store = world
    rows = {r.model: r for r in data.model_rows(store, MODELS, ROUND)}
    assert rows["alpha_model"].submission.status == "sent"
    assert rows["beta_model"].submission.status == "failed"
    # open positions: rounds 1179 (5 NMR, the newest: the per-round stake) and 1178 (4);
    # the resolved one of round 1150 (3 NMR, payout +0.25) is claimable
    alpha = rows["alpha_model"]
    assert (alpha.per_round_stake, alpha.open_positions, alpha.locked) == (5.0, 2, 9.0)
    assert alpha.claimable == pytest.approx(3.25)
    assert alpha.source == "history"
    # a round with no submission of the model
    assert data.model_rows(store, ["alpha_model"], ROUND + 1)[0].submission is None


def test_the_configured_models_come_from_submit_models_else_the_history(world):
    root, _, store = world
    configured = config(f"history.path={root / 'history.sqlite'}",
                        "++submit.models={beta_model: outputs/x}")
    assert data.configured_models(configured, store) == ["beta_model"]
    assert data.configured_models(config(), store) == ["alpha_model", "beta_model"]


def test_offline_the_round_follows_the_weekday_schedule():
    view = data.offline_round(datetime(2026, 12, 8, 12, 30, tzinfo=UTC))  # a Tuesday
    assert view.source == data.SCHEDULED
    assert view.status.number is None and view.status.is_open
    assert view.status.close_time == datetime(2026, 12, 8, 13, tzinfo=UTC)
    assert view.status.next_open_time == datetime(2026, 12, 9, 12, tzinfo=UTC)


@pytest.mark.parametrize(("override", "key"), [
    ("dashboard.refresh_s=-1", "dashboard.refresh_s"),
    ("dashboard.direction=up", "dashboard.direction"),
    ("dashboard.runs=5", "dashboard.runs"),
    ("+dashboard.refresh=5", "refresh"),
])
def test_a_bad_setting_is_one_line_naming_it(override, key):
    with pytest.raises(NumerlabError) as caught:
        data.read_settings(config(override))
    assert key in str(caught.value) and "\n" not in str(caught.value)


def test_the_defaults_read():
    options = data.read_settings(config())
    assert options.runs == ("outputs", "multirun")
    assert options.refresh_s > 0 and options.metric == "corr_sharpe"
