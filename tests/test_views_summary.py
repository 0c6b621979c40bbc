"""`python -m numerlab.summary outputs/<date>` on a day of real runs of every kind: the
tasks that write no metrics.json by design are finished, not failed; backtests are ranked by
their own metrics; a run that failed is still a failure."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from conftest import run_in_process
from rich.console import Console

from numerlab import summary

pytestmark = pytest.mark.slow  # real runs of run.py's tasks


def api(fake) -> list[str]:
    return [f"tournament.api_url={fake.url}", "tournament.backoff_s=0.01",
            "tournament.timeout_s=10"]


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


@pytest.fixture(scope="module")
def day(trained_run, tmp_path_factory):
    """outputs/<date>: a train run, two backtests of it, an export, a compare and a status
    run, each by run.py; and a backtest that failed (a bad policy), as a user's day holds."""
    from fakes.numerai_server import FakeNumerai

    trained, _ = trained_run
    day = tmp_path_factory.mktemp("outputs") / "2026-12-07"
    shutil.copytree(trained, day / "09-00-00-lgbm")
    source = day / "09-00-00-lgbm"
    backtest = ["task=backtest", f"run_dir={source}", "payout.multipliers_from=config"]
    ok(run_in_process([*backtest, "staking=fixed", f"hydra.run.dir={day / '10-00-00-backtest'}"]))
    ok(run_in_process([*backtest, "staking=sharpe_scaled",
                       f"hydra.run.dir={day / '10-10-00-backtest'}"]))
    failed = run_in_process([*backtest, "staking=fixed", "task.initial_stake=-1",
                             f"hydra.run.dir={day / '10-20-00-backtest'}"])
    assert failed.returncode == 2
    ok(run_in_process(["task=export", f"run_dir={source}",
                       f"hydra.run.dir={day / '11-00-00-export'}"]))
    ok(run_in_process(["task=compare", f"runs=[{source}]",
                       f"hydra.run.dir={day / '12-00-00-compare'}"]))
    fake = FakeNumerai().start()
    try:
        fake.open_round(1001)
        ok(run_in_process(["task=status", *api(fake),
                           f"hydra.run.dir={day / '13-00-00-status'}"]))
    finally:
        fake.stop()
    return day


def test_tasks_without_metrics_are_finished_not_failed(day):
    ranked = summary.rank(summary.collect(day), "corr_sharpe")
    status = dict(zip(ranked["name"], ranked["status"], strict=True))
    assert status == {"09-00-00-lgbm": "ok", "10-00-00-backtest": "ok",
                      "10-10-00-backtest": "ok", "10-20-00-backtest": "failed",
                      "11-00-00-export": "done", "12-00-00-compare": "done",
                      "13-00-00-status": "done"}
    tasks = dict(zip(ranked["name"], ranked["task"], strict=True))
    assert tasks["11-00-00-export"] == "export" and tasks["13-00-00-status"] == "status"
    console = Console(record=True, width=200)
    summary.print_summary(ranked, "corr_sharpe", console=console)
    text = console.export_text()
    assert "failed jobs (1)" in text
    failed = text[text.index("failed jobs"):]
    assert "10-20-00-backtest" in failed
    for name in ("11-00-00-export", "12-00-00-compare", "13-00-00-status"):
        assert name not in failed
    assert "finished jobs without metrics (3)" in text


def test_backtests_are_ranked_by_their_own_metrics(day):
    ranked = summary.rank(summary.collect(day), "corr_sharpe")
    backtests = ranked.filter(pl.col("task") == "backtest", pl.col("status") == "ok")
    returns = {name: json.loads((day / name / "metrics.json").read_text())
               ["policy_total_return"] for name in backtests["name"]}
    best_first = sorted(returns, key=returns.get, reverse=True)
    assert backtests["name"].to_list() == best_first
    assert backtests["rank"].to_list() == [1, 2]
    assert ranked.filter(pl.col("name") == "09-00-00-lgbm")["rank"].to_list() == [1]
    console = Console(record=True, width=200)
    summary.print_summary(ranked, "corr_sharpe", console=console)
    text = console.export_text()
    table = text[text.index("backtests (2), ranked by policy_total_return"):]
    table = table[:table.index("finished jobs")]
    top = next(line for line in table.splitlines() if best_first[0] in line)
    assert "—" not in top
    assert f"{returns[best_first[0]]:+.4f}" in top

