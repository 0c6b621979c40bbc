"""Sweeps through `python run.py -m` for real: bad input stops a sweep before its first job
with one line and nothing written; the joblib launcher runs 2 jobs at once, each limited to
its share of the cores; the Ray launcher runs a sweep on a local Ray head (skipped where Ray
is not installed: `pip install -e '.[ray]'`). Also the `payout` metric against Numerai's
formula written out by hand."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import FAST_GBDT, ROOT, SMALL_DATA, compose, error_line, read_metrics, run_in_process

from numerlab.backtest import payout_mean
from numerlab.errors import NumerlabError
from numerlab.sweep_checks import train_metric_keys

# `++`: registered in conf/config.yaml or not, the checks run
CHECKS = "++hydra.callbacks.sweep_checks._target_=numerlab.sweep_checks.SweepChecksCallback"
QUICK = [*SMALL_DATA, "scoring.fnc=false", "scoring.exposure=false"]
TINY_MLP = ["trainer=cpu", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "model.batch_size=256"]


def run_py(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
           python: str = sys.executable, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python run.py ...` with this checkout's package, no W&B key and no user settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), HYDRA_FULL_ERROR="0", WANDB_SILENT="true",
               WANDB_CONFIG_DIR=str(cwd / ".wandb-config"), NETRC=str(cwd / ".netrc-none"))
    env.update(extra_env or {})
    return subprocess.run([python, str(ROOT / "run.py"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def run_py_in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """run_py's run in this process (`run_in_process`), with run_py's environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("WANDB_", "RAY_"))}
    env.update(WANDB_SILENT="true", WANDB_CONFIG_DIR=str(cwd / ".wandb-config"),
               NETRC=str(cwd / ".netrc-none"))
    return run_in_process(args, env=env, cwd=cwd)


def compose_with_hydra(overrides: list[str]):
    """conf/ composed with its `hydra` node (search spaces, storage, launcher)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides,
                             return_hydra_config=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- bad input: one line before any job ---------------------------------------------------

def assert_stopped_before_any_job(proc: subprocess.CompletedProcess, sweep_dir: Path,
                                  *expected: str) -> str:
    line = error_line(proc)
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, line
    assert not sweep_dir.exists(), sorted(sweep_dir.rglob("*"))
    return line


BAD_SWEEPS = [
    (["optimized_metric=corr_sharp", "model=lgbm,xgboost"],
     ["optimized_metric=corr_sharp", "corr_sharpe", "mmc_mean", "payout"]),
    # FNC is not scored: no job would write fnc_mean
    (["optimized_metric=fnc_mean", "scoring.fnc=false", "model=lgbm,xgboost"],
     ["optimized_metric=fnc_mean", "corr_sharpe"]),
    # a CV sweep is checked too, against the CV run's keys
    (["task=cv", "optimized_metric=fold_corr_nope", "model=lgbm,xgboost"],
     ["optimized_metric=fold_corr_nope", "fold_corr_mean_std", "n_folds"]),
    (["hparams_search=lgbm_optuna", "model.params.lerning_rate=0.1,0.2"],
     ["model.params.lerning_rate", "learning_rate", "+model.params.lerning_rate"]),
    # a typo inside a search space file (hydra.sweeper.params)
    (["hparams_search=xgboost_optuna",
      "++hydra.sweeper.params={model.params.max_dept: 'int(interval(3, 8))'}"],
     ["hydra.sweeper.params", "model.params.max_dept", "max_depth"]),
    (["hparams_search=lgbm_optuna", "hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db"],
     ["hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db", "/nonexistent/dir"]),
    (["hparams_search=lgbm_optuna", "hydra.sweeper.storage=postgresql://u@127.0.0.1:1/db"],
     ["hydra.sweeper.storage=postgresql://u@127.0.0.1:1/db", "cannot connect"]),
    (["model=lgbm,xgboost", "logger=wandb", "logger.mode=online"],
     ["logger.mode=online", "WANDB_API_KEY"]),
]


# in this process all but the W&B one (wandb asks git about the cwd), which a fresh process runs
@pytest.mark.parametrize("overrides,expected", BAD_SWEEPS[:-1])
def test_bad_sweep_stops_before_the_first_job(tmp_path: Path, overrides: list[str],
                                              expected: list[str]):
    sweep_dir = tmp_path / "sweep"
    proc = run_py_in_process(["-m", CHECKS, *overrides, f"hydra.sweep.dir={sweep_dir}"],
                             cwd=tmp_path)
    assert_stopped_before_any_job(proc, sweep_dir, *expected)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,expected", [BAD_SWEEPS[0], BAD_SWEEPS[-1]])
def test_bad_sweep_stops_before_the_first_job_in_a_fresh_process(
        tmp_path: Path, overrides: list[str], expected: list[str]):
    sweep_dir = tmp_path / "sweep"
    proc = run_py(["-m", CHECKS, *overrides, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert_stopped_before_any_job(proc, sweep_dir, *expected)


def test_storage_that_is_not_a_database_stops_the_sweep(tmp_path: Path):
    (tmp_path / "notes.db").write_text("not sqlite\n" * 100)
    sweep_dir = tmp_path / "sweep"
    proc = run_py_in_process(["-m", CHECKS, "hparams_search=lgbm_optuna",
                              "hydra.sweeper.storage=sqlite:///notes.db",
                              f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert_stopped_before_any_job(proc, sweep_dir, "notes.db", "cannot be opened as SQLite")
    assert (tmp_path / "notes.db").read_text() == "not sqlite\n" * 100


@pytest.mark.slow  # a fresh process: Ray is imported and asked to connect
def test_ray_address_that_does_not_answer_stops_the_sweep(tmp_path: Path):
    port = free_port()  # nothing listens there
    sweep_dir = tmp_path / "sweep"
    proc = run_py(["-m", CHECKS, "model=lgbm,xgboost", "hydra/launcher=ray",
                   f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                   f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    if importlib.util.find_spec("ray") is None:
        assert_stopped_before_any_job(proc, sweep_dir, "hydra/launcher=ray", ".[ray]")
    else:
        assert_stopped_before_any_job(proc, sweep_dir, f"127.0.0.1:{port}", "no Ray head",
                                      "ray start --head")


def test_a_good_sweep_passes_the_checks(tmp_path: Path):
    """The checks accept what the shipped search spaces and metrics name."""
    from numerlab import sweep_checks

    for name in ("lgbm", "xgboost", "mlp", "resnet", "tabnet"):
        cfg = compose_with_hydra([f"hparams_search={name}_optuna", "optimized_metric=payout"])
        assert [key for _, key in sweep_checks.swept_keys(cfg)] == list(cfg.hydra.sweeper.params)
        sweep_checks.check_optimized_metric(cfg)
        sweep_checks.check_search_space(cfg)
    storage = tmp_path / "optuna.db"
    sqlite3.connect(storage).close()  # an existing, empty SQLite file is fine too
    cfg = compose_with_hydra(["hparams_search=lgbm_optuna",
                              f"hydra.sweeper.storage=sqlite:///{storage}"])
    assert cfg.hydra.sweeper.storage == f"sqlite:///{storage}"
    sweep_checks.check_storage(cfg)


# --- payout ---------------------------------------------------------------------------------

PAYOUT = {"rule": "v2", "corr_mult": 0.75, "mmc_mult": 2.25, "clip": 0.05,
          "payout_factor": 0.8, "resolution_lag_eras": 4}


def payout_by_hand(corr: list[float | None], mmc: list[float | None], rule: dict) -> float:
    """Numerai's rule era by era: clip(pf * (cm * CORR + mm * MMC), -clip, clip); no MMC
    pays on CORR alone; eras without CORR do not count."""
    def unknown(value: float | None) -> bool:
        return value is None or math.isnan(value)

    paid = []
    for c, m in zip(corr, mmc, strict=True):
        if unknown(c):
            continue
        m = 0.0 if unknown(m) else m
        raw = rule["payout_factor"] * (rule["corr_mult"] * c + rule["mmc_mult"] * m)
        paid.append(min(max(raw, -rule["clip"]), rule["clip"]))
    return sum(paid) / len(paid)


def test_payout_is_the_mean_clipped_payout_over_eras():
    corr = [0.02, 0.09, -0.04, None, 0.0, 0.01]
    mmc = [0.01, 0.02, -0.03, 0.05, None, -0.002]  # era 2 and 3 clip, era 4 has no MMC
    frame = pl.DataFrame({"era": [f"{e:04d}" for e in range(6)], "corr": corr, "mmc": mmc})
    assert payout_mean(frame, PAYOUT) == pytest.approx(payout_by_hand(corr, mmc, PAYOUT))
    no_mmc = frame.drop("mmc")
    assert payout_mean(no_mmc, PAYOUT) == pytest.approx(
        payout_by_hand(corr, [None] * 6, PAYOUT))
    assert payout_mean(frame.with_columns(pl.lit(None, pl.Float64).alias("corr")),
                       PAYOUT) is None


@pytest.mark.slow  # trained_run
def test_payout_of_a_real_run_uses_its_per_era_scores(small_data_dir: Path, trained_run):
    """On a finished run's per_era.parquet (the shared train run), with the composed
    conf/payout/ rule."""
    cfg = compose([*QUICK, *FAST_GBDT, f"data.dir={small_data_dir}"])
    per_era = pl.read_parquet(trained_run[0] / "per_era.parquet")
    rule = dict(cfg.payout)
    expected = payout_by_hand(per_era["corr"].to_list(), per_era["mmc"].to_list(), rule)
    assert payout_mean(per_era, cfg.payout) == pytest.approx(expected)
    assert "payout" in train_metric_keys(cfg)
    assert not math.isclose(expected, 0.0)


def test_payout_rule_is_checked():
    frame = pl.DataFrame({"era": ["0001"], "corr": [0.01]})
    with pytest.raises(NumerlabError, match="payout.clip"):
        payout_mean(frame, {**PAYOUT, "clip": 2.0})


# --- joblib: 2 jobs at once -----------------------------------------------------------------

# A Hydra callback for the test: each job records its pid, its thread limits and when it
# started and ended; on start it waits (at most BARRIER_S) until the other job has started,
# so 2 jobs running at once always overlap and 2 jobs run one after the other never do.
PROBE = '''
import json, os, time
from pathlib import Path
from hydra.experimental.callback import Callback

BARRIER_S = 60


class JobProbe(Callback):
    def on_job_start(self, config, **kwargs):
        out = Path(config.hydra.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        sweep = Path(config.hydra.sweep.dir)
        (sweep / f"started-{config.hydra.job.num}").touch()
        deadline = time.monotonic() + BARRIER_S
        while len(list(sweep.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        import torch
        record = {"pid": os.getpid(), "start": time.time(),
                  "omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()}
        (out / "probe.json").write_text(json.dumps(record))

    def on_job_end(self, config, job_return, **kwargs):
        path = Path(config.hydra.runtime.output_dir) / "probe.json"
        record = json.loads(path.read_text())
        record["end"] = time.time()
        path.write_text(json.dumps(record))
'''


@pytest.mark.slow
def test_joblib_runs_two_optuna_trials_at_once(tmp_path: Path, small_data_dir: Path):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    (tmp_path / "job_probe.py").write_text(PROBE)
    sweep_dir = tmp_path / "sweep"
    proc = run_py(["-m", CHECKS, "hparams_search=mlp_optuna", "hydra/launcher=joblib",
                   "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                   "hydra.sweeper.n_trials=2", "+hydra.callbacks.probe._target_=job_probe.JobProbe",
                   *QUICK, *TINY_MLP, f"data.dir={small_data_dir}", f"hydra.sweep.dir={sweep_dir}"],
                  cwd=tmp_path, extra_env={"PYTHONPATH": f"{ROOT / 'src'}:{tmp_path}"})
    assert proc.returncode == 0, proc.stderr[-4000:]

    jobs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
    assert len(jobs) == 2
    first, second = (json.loads((job / "probe.json").read_text()) for job in jobs)
    assert first["pid"] != second["pid"] != os.getpid()
    assert first["start"] < second["end"] and second["start"] < first["end"], (first, second)
    # joblib's loky workers get OMP_NUM_THREADS = cores // n_jobs unless it is set already:
    # LightGBM, XGBoost (num_threads / nthread 0) and torch each use that many threads
    share = str(max(joblib.cpu_count() // 2, 1))
    assert first["omp"] == second["omp"] == share
    assert first["torch"] == second["torch"] == int(share)
    for job in jobs:
        assert read_metrics(job)["model"] == "mlp"
    assert "Ranked by" in (sweep_dir / "summary.md").read_text()
    # saved by the checks (Optuna's sweeper writes none): `python -m numerlab.summary` reads it
    assert (sweep_dir / "multirun.yaml").is_file()


def test_serial_optuna_with_a_parallel_launcher_is_warned_about():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from numerlab.sweep_checks import serial_trials_warning

    cfg = compose_with_hydra(["hparams_search=mlp_optuna", "hydra/launcher=joblib"])
    assert "hydra.sweeper.n_jobs" in serial_trials_warning(cfg)
    assert serial_trials_warning(compose_with_hydra([
        "hparams_search=mlp_optuna", "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"])) is None
    assert serial_trials_warning(compose_with_hydra(["hparams_search=mlp_optuna"])) is None


# --- Ray: a 2-job sweep on a local head -----------------------------------------------------

@pytest.fixture
def ray_head(tmp_path: Path):
    """A Ray head on 127.0.0.1 (2 CPUs, no dashboard, its own temp dir) whose workers import
    this checkout's numerlab; stopped (its process group) at the end."""
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    ray_cli = Path(sys.executable).parent / "ray"
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must be short
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp_dir}",
         "--disable-usage-stats"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Ray head did not come up"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


@pytest.mark.slow
def test_ray_launcher_runs_a_sweep_on_a_local_head(tmp_path: Path, small_data_dir: Path,
                                                   ray_head: str):
    sweep_dir = tmp_path / "sweep"
    proc = run_py(["-m", CHECKS, "model=lgbm,xgboost", "hydra/launcher=ray",
                   f"hydra.launcher.ray.init.address={ray_head}", *QUICK, *FAST_GBDT,
                   f"data.dir={small_data_dir}", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    for job, model in (("0-lgbm", "lgbm"), ("1-xgboost", "xgboost")):
        assert read_metrics(sweep_dir / job)["model"] == model
        assert (sweep_dir / job / ".hydra" / "config.yaml").is_file()
        assert (sweep_dir / job / "model").is_dir()
    ranked = pl.read_csv(sweep_dir / "summary.csv")
    assert sorted(ranked["name"].to_list()) == ["0-lgbm", "1-xgboost"]
    assert ranked["status"].to_list() == ["ok", "ok"]


# --- SLURM (submitit): configuration only -------------------------------------------------

def test_slurm_preset_composes_onto_the_submitit_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_with_hydra(["hparams_search=lgbm_optuna", "hydra/launcher=slurm",
                              "hydra.launcher.partition=cpu", "hydra.launcher.cpus_per_task=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == ("hydra_plugins.hydra_submitit_launcher.submitit_launcher."
                                 "SlurmLauncher")
    assert launcher.partition == "cpu" and launcher.timeout_min == 240
    assert list(launcher.setup) == ["export OMP_NUM_THREADS=4"]
    from numerlab.sweep_checks import check_sweep

    check_sweep(cfg)  # the plugin is there, the search space and metric are fine
