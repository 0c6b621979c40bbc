"""numerlab.summary: a real `python run.py -m` sweep summarised by its Hydra callback, run dirs
laid out the way the CLI leaves them (metrics.json, error.txt, .hydra/overrides.yaml), the real
`dvc exp show --json` of a temporary DVC repo, ranking rules, and `python -m numerlab.summary`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import FAST_GBDT, ROOT, SMALL_DATA, read_metrics, run_cli
from rich.console import Console

from numerlab import summary
from numerlab.errors import NumerlabError

CALLBACK = "++hydra.callbacks.summary._target_=numerlab.summary.SweepSummaryCallback"
VENV_BIN = Path(sys.executable).parent
SRC_ENV = {"PYTHONPATH": str(ROOT / "src")}  # this checkout's numerlab from any cwd


def make_run(run_dir: Path, overrides: list[str], metrics: dict | None = None,
             error: str | None = None) -> Path:
    """A job dir as run.py leaves it: .hydra/overrides.yaml, then metrics.json when it
    finished or error.txt (the CLI's one line) when it failed."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (run_dir / "error.txt").write_text(error + "\n")
    return run_dir


def scores(corr_sharpe: float | None, corr_mean: float = 0.01) -> dict:
    return {"corr_mean": corr_mean, "corr_sharpe": corr_sharpe, "mmc_mean": 0.001,
            "corr_max_drawdown": 0.2, "n_eras": 12, "model": "LGBMModel", "target": "target"}


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """Six jobs of a seed sweep: three scored, one with a null score, one failed (error.txt),
    one unfinished (neither file)."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("optimized_metric: corr_sharpe\n"
                                        "hydra:\n  sweeper:\n    direction: maximize\n")
    common = ["data.dir=/tmp/d", "model=lgbm"]
    make_run(root / "0-lgbm", [*common, "seed=0"], scores(0.5))
    make_run(root / "1-lgbm", [*common, "seed=1"], scores(None))
    make_run(root / "2-lgbm", [*common, "seed=2"], error="model.params.max_bin=0: must be > 1\n"
                                                         "second line is not shown")
    make_run(root / "10-lgbm", [*common, "seed=10"], scores(0.9))
    make_run(root / "3-lgbm", [*common, "seed=3"])
    make_run(root / "4-lgbm", [*common, "seed=4"], scores(-0.1))
    return root


def test_collect_reads_every_job_of_a_sweep_dir(sweep_dir: Path):
    frame = summary.collect(sweep_dir)
    assert frame["name"].to_list() == ["0-lgbm", "1-lgbm", "2-lgbm", "3-lgbm", "4-lgbm",
                                       "10-lgbm"]
    # overrides every job shares (data.dir, model) are not what tells them apart
    assert frame["overrides"].to_list() == [f"seed={s}" for s in (0, 1, 2, 3, 4, 10)]
    assert frame["status"].to_list() == ["ok", "ok", "failed", "failed", "ok", "ok"]
    errors = dict(zip(frame["name"], frame["error"], strict=True))
    assert errors["2-lgbm"] == "model.params.max_bin=0: must be > 1"
    assert "did not finish" in errors["3-lgbm"]
    assert errors["0-lgbm"] is None
    assert frame["run_dir"][0] == str(sweep_dir / "0-lgbm")
    assert frame.schema["corr_sharpe"] == pl.Float64 and frame.schema["n_eras"] == pl.Int64
    assert "model" not in frame.columns  # strings in metrics.json are not metrics


def test_rank_orders_finished_runs_then_failed(sweep_dir: Path):
    ranked = summary.rank(summary.collect(sweep_dir), "corr_sharpe")
    assert ranked["name"].to_list() == ["10-lgbm", "0-lgbm", "4-lgbm", "1-lgbm", "2-lgbm",
                                        "3-lgbm"]
    assert ranked["rank"].to_list() == [1, 2, 3, None, None, None]
    lowest_first = summary.rank(summary.collect(sweep_dir), "corr_sharpe", "minimize")
    assert lowest_first["name"].to_list()[:4] == ["4-lgbm", "0-lgbm", "10-lgbm", "1-lgbm"]


def test_rank_puts_nan_last_and_keeps_job_order_on_ties(tmp_path: Path):
    frame = pl.DataFrame({"name": ["a", "b", "c", "d"], "overrides": ["", "", "", ""],
                          "corr_mean": [0.1, math.nan, 0.3, 0.1],
                          "status": ["ok"] * 4, "error": [None] * 4, "run_dir": ["x"] * 4},
                         schema_overrides={"error": pl.String})
    ranked = summary.rank(frame, "corr_mean")
    assert ranked["name"].to_list() == ["c", "a", "d", "b"]
    assert ranked["rank"].to_list() == [1, 2, 3, None]


def test_rank_names_the_metrics_it_could_rank_by(sweep_dir: Path):
    with pytest.raises(NumerlabError, match=r"'bmc_mean' is in no run's metrics.json; choose "
                                            r"one of corr_mean, corr_sharpe"):
        summary.rank(summary.collect(sweep_dir), "bmc_mean")
    with pytest.raises(NumerlabError,
                       match=r"direction='up' is unknown \(allowed: maximize, minimize\)"):
        summary.rank(summary.collect(sweep_dir), "corr_sharpe", "up")


def test_rank_of_only_failed_runs_lists_them(tmp_path: Path):
    make_run(tmp_path / "0-lgbm", ["seed=0"], error="boom")
    ranked = summary.rank(summary.collect(tmp_path), "corr_sharpe")
    assert ranked["status"].to_list() == ["failed"] and ranked["rank"].to_list() == [None]


def test_collect_finds_single_run_dirs_two_levels_down(tmp_path: Path):
    outputs = tmp_path / "outputs"
    make_run(outputs / "2026-01-02" / "10-00-00-lgbm", ["model=lgbm"], scores(0.2))
    make_run(outputs / "2026-01-02" / "11-00-00-mlp", ["model=mlp"], scores(0.4))
    (outputs / "2026-01-02" / "11-00-00-mlp" / "plots" / "deeper").mkdir(parents=True)
    frame = summary.rank(summary.collect(outputs), "corr_sharpe")
    assert frame["name"].to_list() == ["2026-01-02/11-00-00-mlp", "2026-01-02/10-00-00-lgbm"]
    assert frame["overrides"].to_list() == ["model=mlp", "model=lgbm"]
    one = summary.collect(outputs / "2026-01-02" / "10-00-00-lgbm")
    assert one["name"].to_list() == ["10-00-00-lgbm"] and one["overrides"][0] == "model=lgbm"


def test_collect_of_a_dir_without_runs_is_one_line(tmp_path: Path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(NumerlabError, match="empty: no runs") as info:
        summary.collect(tmp_path / "empty")
    assert "\n" not in str(info.value)
    with pytest.raises(NumerlabError, match="no such file or directory"):
        summary.collect(tmp_path / "missing")


def test_write_and_print(sweep_dir: Path, tmp_path: Path):
    ranked = summary.rank(summary.collect(sweep_dir), "corr_sharpe")
    csv_path, md_path = summary.write(ranked, tmp_path / "out", "corr_sharpe")
    back = pl.read_csv(csv_path)
    assert back.columns[:3] == ["rank", "name", "overrides"]
    assert back["name"].to_list() == ranked["name"].to_list()
    assert back["corr_sharpe"][0] == pytest.approx(0.9)
    md = md_path.read_text()
    assert md.index("10-lgbm") < md.index("| 2 | 0-lgbm") < md.index("## Failed (2)")
    assert "- `2-lgbm` (seed=2): model.params.max_bin=0: must be > 1" in md

    console = Console(record=True, width=200)
    summary.print_summary(ranked, "corr_sharpe", console=console)
    text = console.export_text()
    assert text.index("10-lgbm") < text.index("0-lgbm") < text.index("failed jobs (2)")
    assert text.index("failed jobs (2)") < text.index("model.params.max_bin=0: must be > 1")


def summary_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **SRC_ENV, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "numerlab.summary", *args], check=False,
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow  # python -m numerlab.summary
def test_cli_rewrites_a_sweep_dir_summary(sweep_dir: Path):
    proc = summary_cli(str(sweep_dir))  # metric and direction from multirun.yaml
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.index("10-lgbm") < proc.stdout.index("4-lgbm")
    assert pl.read_csv(sweep_dir / "summary.csv")["name"][0] == "10-lgbm"
    proc = summary_cli(str(sweep_dir), "--metric", "corr_mean", "--direction", "minimize")
    assert proc.returncode == 0, proc.stderr
    assert "ranked by corr_mean" in proc.stdout
    assert "Ranked by `corr_mean`" in (sweep_dir / "summary.md").read_text()


@pytest.mark.slow  # python -m numerlab.summary
def test_cli_error_for_a_dir_without_runs(tmp_path: Path):
    proc = summary_cli(str(tmp_path))
    assert proc.returncode == 2
    expected = (f"error: {tmp_path}: no runs (no metrics.json, error.txt or "
                ".hydra/overrides.yaml in it or one or two levels below)")
    assert proc.stderr.strip().splitlines() == [expected]


@pytest.mark.slow
def test_multirun_writes_a_ranked_summary(tmp_path: Path, small_data_dir: Path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "model=lgbm", "seed=1,2", "optimized_metric=corr_sharpe",
                    f"data.dir={small_data_dir}", f"hydra.sweep.dir={sweep}", CALLBACK,
                    *SMALL_DATA, *FAST_GBDT], cwd=tmp_path, env=SRC_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharpe = {d.name: read_metrics(d)["corr_sharpe"] for d in (sweep / "0-lgbm",
                                                               sweep / "1-lgbm")}
    best = max(sharpe, key=sharpe.get)
    table = pl.read_csv(sweep / "summary.csv")
    assert table["name"].to_list() == sorted(sharpe, key=sharpe.get, reverse=True)
    assert table["rank"].to_list() == [1, 2]
    assert table["corr_sharpe"][0] == pytest.approx(sharpe[best])
    assert sorted(table["overrides"]) == ["seed=1", "seed=2"]
    printed = proc.stdout[proc.stdout.index("sweep summary:"):]
    assert printed.index(best) < printed.index("ranked by corr_sharpe")


# --- dvc exp show --json ------------------------------------------------------------------

TRAIN = """import json, sys, yaml
p = yaml.safe_load(open("params.yaml"))
if p["model"]["depth"] > 8:
    sys.exit("error: model.depth=%d is over 8" % p["model"]["depth"])
json.dump({"corr_mean": p["model"]["lr"] * p["model"]["depth"],
           "corr_sharpe": 1 / p["model"]["depth"], "n_eras": 3}, open("metrics.json", "w"))
"""
DVC_YAML = {"stages": {"train": {"cmd": f"{sys.executable} train.py", "deps": ["train.py"],
                                 "params": ["model", "seed"],
                                 "metrics": [{"metrics.json": {"cache": False}}]}}}


def sh(repo: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(list(args), cwd=repo, capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.slow  # real DVC
def test_collect_reads_dvc_exp_show_json(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc = str(VENV_BIN / "dvc")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "t@example.com")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, dvc, "init", "-q")
    (repo / "params.yaml").write_text("model:\n  lr: 0.1\n  depth: 3\nseed: 1\n")
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    sh(repo, dvc, "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    sh(repo, dvc, "exp", "run", "-q", "-n", "fast", "-S", "model.lr=0.2")
    sh(repo, dvc, "exp", "run", "-q", "-n", "deep", "-S", "model.lr=0.1", "-S", "model.depth=6",
       "-S", "seed=2")
    show = tmp_path / "exps.json"
    show.write_text(sh(repo, dvc, "exp", "show", "--json"))

    ranked = summary.rank(summary.collect(show), "corr_mean")
    rows = {row["name"]: row for row in ranked.iter_rows(named=True)}
    assert set(rows) == {"master", "fast", "deep"} or set(rows) == {"main", "fast", "deep"}
    assert rows["fast"]["overrides"] == "model.lr=0.2"
    assert rows["deep"]["overrides"] == "model.depth=6,seed=2"
    assert rows["deep"]["corr_mean"] == pytest.approx(0.6)
    assert rows["fast"]["corr_sharpe"] == pytest.approx(1 / 3)
    assert ranked["name"][0] == "deep" and all(r["status"] == "ok" for r in rows.values())
    assert rows["fast"]["run_dir"].startswith(f"{show}@")


# A failed queued experiment as DVC 3.67.1's `dvc exp show --json` reports it (recorded from a
# `dvc exp run --queue` + `dvc queue start` whose stage exited with an error; trimmed to the
# keys summary reads). Its one-line error is in the executor's log.
def failed_queue_entry(log_path: Path) -> list[dict]:
    params = {"params.yaml": {"data": {"model": {"lr": 0.1, "depth": 3}, "seed": 1}}}
    return [
        {"rev": "workspace", "name": None, "error": None, "experiments": None,
         "data": {"rev": "workspace", "params": params, "metrics": {}}},
        {"rev": "8e7e9efbaf28c93ef927729b03e61abb32e15292", "name": "master", "error": None,
         "data": {"rev": "8e7e9efbaf28c93ef927729b03e61abb32e15292", "params": params,
                  "metrics": {"metrics.json": {"data": {"corr_mean": 0.3, "n_eras": 3}}}},
         "experiments": [
             {"revs": [{"rev": "860a8c677b193740e1bd282b83a3cdf59357c9ec", "name": "qbad",
                        "data": {"rev": "860a8c677b193740e1bd282b83a3cdf59357c9ec",
                                 "params": {"params.yaml": {"data": {
                                     "model": {"lr": 0.1, "depth": 10}, "seed": 1}}},
                                 "metrics": {"metrics.json": {"error": {
                                     "type": "FileNotFoundError", "msg": "No such file"}}}},
                        "error": {"msg": "Experiment run failed", "type": ""},
                        "experiments": None}],
              "executor": {"state": "failed", "name": None,
                           "local": {"root": None, "log": str(log_path), "pid": 7278,
                                     "returncode": 255, "task_id": "860a8c67"}},
              "name": "qbad"},
             {"revs": [{"rev": "bbb4a8088c1f936cc8cb0346d59d32e94368353b", "name": "queued",
                        "data": {"rev": "bbb4a8088c1f936cc8cb0346d59d32e94368353b",
                                 "params": params, "metrics": {}},
                        "error": None, "experiments": None}],
              "executor": {"state": "queued", "name": "dvc-task", "local": None},
              "name": "queued"},
         ]},
    ]


def test_collect_reports_a_failed_queued_dvc_experiment(tmp_path: Path):
    log_path = tmp_path / "task.out"
    log_path.write_text("Reproducing experiment 'qbad'\n> python train.py\n"
                        "error: model.depth=10 is over 8\n"
                        "ERROR: failed to reproduce 'train': failed to run: python train.py\n")
    show = tmp_path / "exps.json"
    show.write_text(json.dumps(failed_queue_entry(log_path)))
    frame = summary.rank(summary.collect(show), "corr_mean")
    assert frame["name"].to_list() == ["master", "qbad"]  # queued: no result yet
    failed = frame.row(1, named=True)
    assert failed["status"] == "failed" and failed["overrides"] == "model.depth=10"
    assert failed["error"] == "error: model.depth=10 is over 8"
    log_path.unlink()  # the log is gone: DVC's own message
    assert summary.collect(show)["error"][1] == "Experiment run failed"


def test_collect_rejects_json_that_is_not_dvc_exp_show(tmp_path: Path):
    other = tmp_path / "metrics.json"
    other.write_text(json.dumps({"corr_mean": 0.1}))
    with pytest.raises(NumerlabError, match="not `dvc exp show --json` output"):
        summary.collect(other)


def test_dvc_param_changes_leave_out_the_derived_load_keys():
    from numerlab.summary import param_changes

    baseline = {"model.targets": None, "load.targets": None, "seed": 42}
    params = {"model.targets": ["target", "target_victor_20"],
              "load.targets": ["target", "target_victor_20"], "seed": 42}
    assert param_changes(params, baseline) == ['model.targets=["target","target_victor_20"]']


def test_every_table_shows_the_headline_metrics_in_reports_one_order():
    from numerlab import compare, report

    frame = pl.DataFrame({key: [0.1] for key in reversed(report.HEADLINE_KEYS)})
    assert compare.shown_metrics(frame) == report.HEADLINE_KEYS
    assert summary.shown_columns(frame) == list(report.NARROW)
