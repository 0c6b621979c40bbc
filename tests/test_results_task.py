"""task=results as a user runs it (run.py in this process): from the history alone without
keys, and with keys against the fake Numerai (real numerapi over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import error_line, run_in_process
from fakes.numerai_server import KEYS_ENV, PUBLIC_ID, SECRET_KEY

from numerlab.history import SENT, History, Score

NO_KEYS = {"NUMERAI_PUBLIC_ID": None, "NUMERAI_SECRET_KEY": None}


def validation_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({
        "corr_mean": 0.02, "corr_std": 0.02, "corr_sharpe": 1.0, "corr_max_drawdown": 0.03,
        "mmc_mean": 0.001, "mmc_std": 0.01, "mmc_sharpe": 0.1, "bmc_mean": 0.002}))
    return run_dir


def results_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["task=results", f"history.path={tmp_path / 'history.sqlite'}",
            f"hydra.run.dir={tmp_path / 'job'}", *extra]


def read_results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "job" / "results.json").read_text())


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


@pytest.fixture
def history(tmp_path) -> History:
    """my_model submitted from a run, with four resolved rounds below validation's range
    and one pending."""
    store = History(tmp_path / "history.sqlite")
    store.begin_submission(1000, "my_model", run_dir=str(validation_run(tmp_path)),
                           config_hash="c", sha256="s", status=SENT)
    store.upsert_scores([Score("my_model", 1001 + i, "canon_corr", value, day=20,
                               resolved=True)
                         for i, value in enumerate([-0.01, -0.02, 0.0, -0.015])])
    store.upsert_scores([Score("my_model", 1005, "canon_corr", 0.01, day=3)])
    return store


def test_offline_results_come_from_the_history_alone(tmp_path, history):
    proc = run_in_process(results_args(tmp_path, "results.export=csv"), env=NO_KEYS)
    ok(proc)
    assert "not refreshed: no Numerai API keys" in proc.stdout
    record = read_results(tmp_path)
    assert (record["refreshed"], record["new_scores"]) == (False, None)
    [model] = record["models"]
    assert (model["model"], model["n_rounds"], model["pending"]) == ("my_model", 4, 1)
    assert model["live"]["corr_mean"] == pytest.approx(-0.01125)
    assert model["validation"]["corr_mean"] == 0.02
    assert len(model["flags"]) == 2 and "below the validation range" in model["flags"][0]
    assert "below the validation range" in proc.stdout and "pending: round 1005" in proc.stdout
    assert Path(model["plot"]).is_file() and Path(model["plot"]).stat().st_size > 1000
    scores = pl.read_csv(tmp_path / "job" / "history" / "scores.csv")
    assert sorted(scores["round"].to_list()) == [1001, 1002, 1003, 1004, 1005]
    assert record["notifications"] == []  # nothing newly fetched: nothing to tell


def test_results_without_any_model_is_one_line(tmp_path):
    line = error_line(run_in_process(results_args(tmp_path), env=NO_KEYS))
    assert "task=results has no model to show: set submit.models or results.models" in line
    assert not (tmp_path / "job" / "results.json").exists()


def test_a_bad_export_format_is_one_line(tmp_path, history):
    line = error_line(run_in_process(results_args(tmp_path, "results.export=xlsx"),
                                     env=NO_KEYS))
    assert "results.export='xlsx' is unknown (allowed: None, parquet, csv)" in line


def test_results_refresh_from_numerai_then_nothing_new(tmp_path, fake_numerai, history):
    from fakes.abs import WALLET

    fake_numerai.add_model("my_model")
    fake_numerai.scores.add("my_model", 1005, "canon_corr", 0.012, day=20, resolved=True)
    fake_numerai.scores.add("my_model", 1006, "canon_corr", 0.02, day=4)
    fake_numerai.abs.add_position("my_model", 1005, "5")
    fake_numerai.abs.resolve(1005, {"my_model": "0.25"})
    fake_numerai.abs.add_position("my_model", 1006, "7")
    args = results_args(tmp_path, f"tournament.api_url={fake_numerai.url}",
                        "tournament.backoff_s=0.01", f"tournament.wallet_address={WALLET}",
                        "results.export=parquet", "results.models=[my_model]")
    proc = run_in_process(args, env=KEYS_ENV)
    ok(proc)
    assert "refreshed from Numerai: 2 new live scores, 2 positions" in proc.stdout
    record = read_results(tmp_path)
    [model] = record["models"]
    assert (model["n_rounds"], model["pending"]) == (5, 1)
    rounds = {r["round"]: r for r in model["rounds"]}
    assert (rounds[1005]["corr"], rounds[1005]["resolved"]) == (0.012, True)
    positions = {p.round: p for p in History(tmp_path / "history.sqlite").positions()}
    assert (positions[1005].stake, positions[1005].payout, positions[1005].resolved) == (
        5.0, pytest.approx(0.25), True)
    assert (positions[1006].stake, positions[1006].payout, positions[1006].resolved) == (
        7.0, None, False)
    exported = pl.read_parquet(tmp_path / "job" / "history" / "positions.parquet")
    assert exported.height == 2

    again = run_in_process(args, env=KEYS_ENV)
    ok(again)
    assert "refreshed from Numerai: 0 new live scores" in again.stdout
    for text in (proc.stdout, proc.stderr, again.stdout, again.stderr,
                 (tmp_path / "job" / "results.json").read_text(),
                 (tmp_path / "job" / "run.log").read_text(),
                 (tmp_path / "job" / ".hydra" / "config.yaml").read_text(),
                 (tmp_path / "history.sqlite").read_bytes().decode("latin-1")):
        assert SECRET_KEY not in text and PUBLIC_ID not in text


def test_newly_resolved_rounds_and_a_new_flag_are_notified_once(tmp_path, fake_numerai):
    from fakes.abs import WALLET
    from fakes.webhook import Webhook

    store = History(tmp_path / "history.sqlite")
    store.begin_submission(1000, "my_model", run_dir=str(validation_run(tmp_path)),
                           config_hash="c", sha256="s", status=SENT)
    # before: two resolved rounds inside validation's range, round 1003 pending
    store.upsert_scores([Score("my_model", 1001, "canon_corr", 0.02, resolved=True),
                         Score("my_model", 1002, "canon_corr", 0.02, resolved=True),
                         Score("my_model", 1003, "canon_corr", 0.0, day=4)])
    fake_numerai.add_model("my_model")
    for number, value in ((1001, 0.02), (1002, 0.02), (1003, -0.06), (1004, -0.05)):
        fake_numerai.scores.add("my_model", number, "canon_corr", value, resolved=True)
    fake_numerai.scores.add("my_model", 1003, "mmc", 0.004, resolved=True)
    fake_numerai.abs.add_position("my_model", 1003, "10", staker=WALLET)
    fake_numerai.abs.resolve(1003, {"my_model": "-0.3"})
    with Webhook.running() as hook:
        args = results_args(tmp_path, f"tournament.api_url={fake_numerai.url}",
                            "tournament.backoff_s=0.01", f"tournament.wallet_address={WALLET}",
                            "notify=apprise", "notify.urls_env=null", "notify.desktop=false",
                            f"notify.urls=[{hook.url('/hook')}]")
        proc = run_in_process(args, env=KEYS_ENV)
        ok(proc)
        posts = {post.body["title"]: post.body["message"] for post in hook.posts}
        # after: [0.02, 0.02, -0.06, -0.05], mean -0.0175 below 0.02 +/- 2 * 0.02 / 2
        assert sorted(posts) == ["numerlab: my_model live outside validation's range",
                                 "numerlab: round 1003 resolved for my_model",
                                 "numerlab: round 1004 resolved for my_model"]
        assert posts["numerlab: round 1003 resolved for my_model"] == (
            "Round 1003, my_model: CORR -0.0600, MMC +0.0040; payout -0.3000 NMR.")
        assert posts["numerlab: round 1004 resolved for my_model"] == (
            "Round 1004, my_model: CORR -0.0500.")
        assert ("live CORR mean -0.0175 over 4 resolved rounds is below the validation "
                "range [+0.0000, +0.0400]") in posts[
            "numerlab: my_model live outside validation's range"]
        recorded = History(tmp_path / "history.sqlite").notifications()
        assert sorted((n.event, n.ok) for n in recorded) == [
            ("live_out_of_range", True), ("round_resolved", True), ("round_resolved", True)]
        assert len(read_results(tmp_path)["notifications"]) == 3

        ok(run_in_process(args, env=KEYS_ENV))  # nothing new: nothing sent again
        assert len(hook.posts) == 3
        for post in hook.posts:
            assert SECRET_KEY not in post.raw and PUBLIC_ID not in post.raw


def test_a_models_first_fetch_notifies_no_round(tmp_path, fake_numerai):
    from fakes.webhook import Webhook

    fake_numerai.add_model("new_model")
    for number in (1001, 1002, 1003):
        fake_numerai.scores.add("new_model", number, "canon_corr", 0.01, resolved=True)
    with Webhook.running() as hook:
        ok(run_in_process(results_args(
            tmp_path, f"tournament.api_url={fake_numerai.url}", "tournament.backoff_s=0.01",
            "results.models=[new_model]", "notify=apprise", "notify.urls_env=null",
            "notify.desktop=false", f"notify.urls=[{hook.url('/hook')}]"), env=KEYS_ENV))
        assert hook.posts == []
    assert read_results(tmp_path)["new_scores"] == 3
