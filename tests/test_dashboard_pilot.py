"""The dashboard as a user drives it: Textual's pilot presses the keys (r, /, s, enter, d, q,
the tab numbers) against a history with known rows, run dirs we wrote, and the fake Numerai;
what counts is the text on the screen."""

from __future__ import annotations

import asyncio

import pytest
import time_machine
from conftest import compose
from dashboard_world import MODELS, NOW, ROUND, screen_text, write_history, write_runs
from fakes.numerai_server import KEYS_ENV, PUBLIC_ID, SECRET_KEY
from textual.widgets import DataTable

from numerlab.dashboard import build_app
from numerlab.dashboard.confirm import Confirm
from numerlab.dashboard.run_detail import RunDetail
from numerlab.history import History

SMALL = (80, 24)
LARGE = (160, 48)
TABS = ("1", "2", "3", "4", "5")


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in KEYS_ENV:
        monkeypatch.delenv(name, raising=False)
    with time_machine.travel(NOW, tick=False):
        runs = write_runs(tmp_path)
        write_history(tmp_path / "history/numerlab.sqlite", runs)
    return tmp_path


def config(*overrides: str):
    models = ", ".join(f"{m}: outputs/2026-12-07/10-00-00-lgbm" for m in MODELS)
    return compose(["task=dashboard", "history.path=history/numerlab.sqlite",
                    f"++submit.models={{{models}}}", *overrides])


def online_config(fake, *overrides: str):
    return config(f"tournament.api_url={fake.url}", "tournament.backoff_s=0.01",
                  "tournament.max_attempts=1", "tournament.timeout_s=3", *overrides)


def app_of(cfg, root):
    return build_app(cfg, root / "outputs/.dashboard/test")


def table_rows(app, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def settle(pilot, app) -> None:
    """Until the refresh worker ended and what it handed back is on screen."""
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def run(scenario) -> None:
    asyncio.run(scenario())


# --- offline ---------------------------------------------------------------------------------

def test_offline_shows_the_history_and_runs_and_says_it_is_offline(world):
    async def scenario():
        with time_machine.travel(NOW, tick=False):
            app = app_of(config(), world)
            async with app.run_test(size=SMALL) as pilot:
                await pilot.pause()
                first = screen_text(app)
                assert "offline" in first and "scheduled (offline)" in first
                assert "in 0h 30m" in first  # to the 13:00 UTC close
                assert "Tue 14:00 CET" in first  # the close in local (Paris) time
                assert "CORR × 5  MMC × 10  (payout config)" in first  # conf/payout/abs
                await pilot.press("2")
                models = screen_text(app)
                assert "alpha_model" in models and "sent (r1180)" in models
                assert "failed (r1180)" in models
                await pilot.press("4")
                assert "outputs/2026-12-07/11-00-00-xgboost" in screen_text(app)
                await pilot.press("5")
                events = screen_text(app)
                assert "round 1180 beta_model: failed" in events
                assert "stake alpha_model: 4 NMR -> 5 NMR" in events
                # r offline: reloads the files, asks nobody
                await pilot.press("r")
                await pilot.pause()
                assert "offline" in screen_text(app)
                assert not app.workers
    run(scenario)


def test_filter_sort_open_and_back(world):
    async def scenario():
        app = app_of(config(), world)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("slash")
            await pilot.press(*"model=xgboost", "enter")
            await pilot.pause()
            rows = table_rows(app, "#runs-table")
            assert [r[1] for r in rows] == ["outputs/2026-12-07/11-00-00-xgboost"]
            assert "filter: model=xgboost" in screen_text(app)
            # a filter of no words shows every run again
            await pilot.press("slash", *["backspace"] * len("model=xgboost"), "enter")
            await pilot.pause()
            assert len(table_rows(app, "#runs-table")) == 5
            # s: the next metric; runs re-ranked by it (corr_mean as written: 0.024 the
            # sweep's job, 0.021 lgbm, 0.018 xgboost, 0.015 cv)
            assert app.runs_state.metric == "corr_sharpe"
            metrics = app.snapshot.runs.metrics
            while app.runs_state.metric != "corr_mean":
                await pilot.press("s")
            assert metrics.index("corr_mean") >= 0
            await pilot.pause()
            names = [r[1] for r in table_rows(app, "#runs-table")]
            assert names[:4] == ["multirun/2026-12-06/09-00-00/0-lgbm",
                                 "outputs/2026-12-07/10-00-00-lgbm",
                                 "outputs/2026-12-07/11-00-00-xgboost",
                                 "outputs/2026-12-07/12-00-00-cv-lgbm"]
            assert "ranked by corr_mean (maximize)" in screen_text(app)
            # S flips the direction: the lowest corr_mean first
            await pilot.press("S")
            await pilot.pause()
            assert table_rows(app, "#runs-table")[0][1] == \
                "outputs/2026-12-07/12-00-00-cv-lgbm"
            assert "ranked by corr_mean (minimize)" in screen_text(app)
            await pilot.press("S")
            await pilot.pause()
            # enter opens the run under the cursor: its metrics, overrides, plot, features
            await pilot.press("down", "enter")
            await pilot.pause()
            assert isinstance(app.screen, RunDetail)
            detail = screen_text(app)
            assert "outputs/2026-12-07/10-00-00-lgbm" in detail
            assert "12 eras 0575–0586" in detail
            assert "CORR sharpe" in detail and "+1.1000" in detail
            assert "top features" in detail and "feature_a" in detail
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, RunDetail)
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0
    run(scenario)


def test_q_quits(world):
    async def scenario():
        app = app_of(config(), world)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("q")
            await pilot.pause()
            assert not app.is_running
    run(scenario)


def test_the_large_layout_keeps_round_and_models_in_view(world):
    async def scenario():
        with time_machine.travel(NOW, tick=False):
            app = app_of(config(), world)
            async with app.run_test(size=LARGE) as pilot:
                await pilot.pause()
                text = screen_text(app)
                assert "next opens" in text and "alpha_model" in text
                assert "claimable" in text and "3.2500" in text  # 3 NMR + 0.25 payout
                await pilot.press("5")
                assert "stake alpha_model" in screen_text(app)
                assert "next opens" in screen_text(app)  # still there beside the tab
    run(scenario)


# --- with keys: the fake Numerai ----------------------------------------------------------------

@pytest.fixture
def numerai(fake_numerai, monkeypatch):
    for name, value in KEYS_ENV.items():
        monkeypatch.setenv(name, value)
    fake_numerai.open_round(ROUND)
    for model in MODELS:
        fake_numerai.add_model(model)
    fake_numerai.abs.add_position("alpha_model", ROUND - 1, stake=7)
    return fake_numerai


def test_with_keys_the_round_and_stakes_come_from_numerai_and_no_key_is_shown(world, numerai):
    async def scenario():
        app = app_of(online_config(numerai), world)
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot, app)
            seen = [screen_text(app)]
            assert "online" in seen[0] and "refreshed" in seen[0]
            assert f"{ROUND}  open" in seen[0]  # the number only Numerai knows
            assert "scheduled (offline)" not in seen[0]
            assert "× CORR" in seen[0] and "0.5" in seen[0]  # the round's multipliers
            for key in TABS:
                await pilot.press(key)
                await pilot.pause()
                seen.append(screen_text(app))
            models = seen[2]
            assert "sent" in models and "7.0000" in models and "api" in models
            for text in seen:
                assert PUBLIC_ID not in text and SECRET_KEY not in text
            assert "rounds" in numerai.operations()
    run(scenario)


def test_rejected_keys_leave_the_data_stale_with_one_line_and_no_key_shown(world, numerai):
    numerai.reject_keys()

    async def scenario():
        app = app_of(online_config(numerai), world)
        async with app.run_test(size=LARGE) as pilot:
            await settle(pilot, app)
            text = screen_text(app)
            assert "stale since" in text and "rejected the API keys" in text
            assert PUBLIC_ID not in text and SECRET_KEY not in text
            assert "Traceback" not in text
            # the history's rows are still shown
            assert "alpha_model" in text and "sent" in text
    run(scenario)


def test_a_hanging_numerai_does_not_freeze_the_screen(world, numerai):
    numerai.hang_next(1, operation="rounds")

    async def scenario():
        app = app_of(online_config(numerai), world)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.pause()
            await pilot.press("5")  # while the refresh waits on Numerai
            await pilot.pause()
            # the key was answered while the worker still waits for its answer
            assert app.refreshing
            assert "round 1180 beta_model: failed" in screen_text(app)
            assert "refreshing" in screen_text(app)
            await settle(pilot, app)
            # the rounds call timed out: one line, the data stale since the start
            assert not app.refreshing
            text = screen_text(app)
            assert "stale since" in text and "no answer within 3s" in text
    run(scenario)


# --- d: submit the selected model's round -------------------------------------------------------

def test_d_asks_first_and_n_sends_nothing(world):
    async def scenario():
        app = app_of(config(), world)
        before = len(app.snapshot.events)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("2", "down", "d")
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            text = screen_text(app)
            assert "beta_model" in text
            assert "Dry run (tournament.submit=false): nothing is uploaded" in text
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, Confirm)
            assert not app.workers
        assert len(app_of(config(), world).snapshot.events) == before
    run(scenario)


def test_d_says_when_it_would_upload(world):
    async def scenario():
        app = app_of(config("tournament.submit=true"), world)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("d")
            await pilot.pause()
            assert "this UPLOADS the predictions to Numerai" in screen_text(app)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, Confirm)
    run(scenario)


@pytest.mark.slow  # the shared train run is a `python run.py` process
def test_d_then_y_dry_runs_the_round_as_task_submit_and_logs_it(world, numerai, trained_run):
    run_dir = trained_run[0]
    cfg = online_config(numerai, f"++submit.models={{alpha_model: '{run_dir}'}}",
                        "tournament.allow_stale_live=true")

    async def scenario():
        app = app_of(cfg, world)
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot, app)
            await pilot.press("2", "d")
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            await pilot.press("y")
            await settle(pilot, app)
            text = screen_text(app)
            assert f"alpha_model: dry run round {ROUND}" in text  # the status line
            await pilot.press("5")
            await pilot.pause()
            assert f"round {ROUND} alpha_model: dry run" in screen_text(app)
    run(scenario)
    assert "create_submission" not in numerai.operations()
    assert "submission_upload_auth" not in numerai.operations()


def test_r_refreshes_again_and_old_data_are_marked_stale(world, numerai):
    from datetime import timedelta

    clock = [NOW]

    async def scenario():
        app = build_app(online_config(numerai, "dashboard.refresh_s=60"),
                        world / "outputs/.dashboard/test", clock=lambda: clock[0])
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot, app)
            asked = numerai.operations().count("rounds")
            assert "refreshed 12:30 UTC" in screen_text(app)
            clock[0] = NOW + timedelta(minutes=5)  # no refresh for more than 2 × 60 s
            app.tick()
            await pilot.pause()
            assert "stale since 12:30 UTC" in screen_text(app)
            await pilot.press("r")
            await settle(pilot, app)
            assert numerai.operations().count("rounds") > asked
            assert "refreshed 12:35 UTC" in screen_text(app)
    run(scenario)


def test_a_terminal_growing_gets_the_large_layout_and_keeps_the_filter(world):
    async def scenario():
        app = app_of(config(), world)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("slash", *"task=cv", "enter")
            await pilot.pause()
            assert "next opens" not in screen_text(app)  # the Runs tab fills the screen
            await pilot.resize_terminal(*LARGE)
            await pilot.pause()
            await pilot.pause()
            text = screen_text(app)
            assert "next opens" in text and "claimable" in text  # Round and Models in view
            assert "filter: task=cv" in text
            assert [r[1] for r in table_rows(app, "#runs-table")] == \
                ["outputs/2026-12-07/12-00-00-cv-lgbm"]
    run(scenario)


def test_refresh_brings_new_live_scores_into_the_history_and_m_picks_the_model(world, numerai):
    # a round the history has not seen: Numerai reports it resolved
    numerai.scores.add("beta_model", ROUND - 20, "canon_corr", 0.04, resolved=True)

    async def scenario():
        app = app_of(online_config(numerai), world)
        async with app.run_test(size=SMALL) as pilot:
            await settle(pilot, app)
            await pilot.press("3")
            await pilot.pause()
            assert "alpha_model  5 rounds" in screen_text(app)
            await pilot.press("m")
            await pilot.pause()
            # beta: its 5 rounds from the history and the new one from Numerai
            assert "beta_model  6 rounds" in screen_text(app)
            assert app.selected_model == "beta_model"
    run(scenario)
    assert "submissionScores" in numerai.operations()
    stored = History(world / "history/numerlab.sqlite").scores(model="beta_model")
    assert ROUND - 20 in {s.round for s in stored}


def test_a_failed_refresh_keeps_what_numerai_said_last_marked_stale(world, numerai):
    async def scenario():
        app = app_of(online_config(numerai), world)
        async with app.run_test(size=LARGE) as pilot:
            await settle(pilot, app)
            assert "7.0000" in screen_text(app)  # the stake of Numerai's book
            numerai.reject_keys()
            await pilot.press("r")
            await settle(pilot, app)
            text = screen_text(app)
            assert "stale since" in text and "rejected the API keys" in text
            assert "7.0000" in text and f"{ROUND}  open" in text  # not the history's 5 NMR
    run(scenario)
