"""Optuna studies in SQLite through `python run.py -m`: a second sweep continues the stored
study with new points, and a job that fails is a FAIL trial while the sweep goes on.

Needs an SQLAlchemy that optuna 2.10 (the newest hydra-optuna-sweeper 1.3 allows) can drive:
SQLAlchemy 1.4 (constraints.txt); with 2.x optuna's RDB storage cannot even open the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ROOT, SMALL_DATA, read_metrics, run_cli

pytestmark = pytest.mark.slow  # real `python run.py -m` sweeps

SRC_ENV = {"PYTHONPATH": str(ROOT / "src")}  # this checkout's numerlab from any cwd
CALLBACK = "++hydra.callbacks.summary._target_=numerlab.summary.SweepSummaryCallback"
# Seconds per trial: small data, no FNC/exposure scoring (and few trees, below).
QUICK = [*SMALL_DATA, "scoring.fnc=false", "scoring.exposure=false"]


def sweep(cwd: Path, data_dir: Path, sweep_dir: str, *overrides: str):
    proc = run_cli(["-m", *overrides, f"data.dir={data_dir}", f"hydra.sweep.dir={sweep_dir}",
                    *QUICK], cwd=cwd, env=SRC_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def job_scores(sweep_dir: Path) -> list[float]:
    """Each finished job's objective: its metrics.json value of its own optimized_metric."""
    scores = []
    for metrics_path in sorted(sweep_dir.glob("*/metrics.json")):
        job_cfg = yaml.safe_load((metrics_path.parent / ".hydra" / "config.yaml").read_text())
        scores.append(read_metrics(metrics_path.parent)[job_cfg["optimized_metric"]])
    return scores


def test_rerun_continues_the_stored_study(tmp_path: Path, small_data_dir: Path):
    import optuna

    storage = "sqlite:///optuna.db"  # relative: the file lands where run.py is launched
    search = ["hparams_search=lgbm_optuna", "hydra.sweeper.n_trials=2",
              f"hydra.sweeper.storage={storage}", "model.num_boost_round=choice(20, 40)"]
    sweep(tmp_path, small_data_dir, "first", *search)
    assert (tmp_path / "optuna.db").is_file()
    sweep(tmp_path, small_data_dir, "second", *search)

    study = optuna.load_study(study_name="lgbm_optuna", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 4, f"a resumed study repeated points: {[t.params for t in trials]}"
    assert sorted(t.value for t in trials) == sorted(
        job_scores(tmp_path / "first") + job_scores(tmp_path / "second"))


def test_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path, small_data_dir: Path):
    import optuna

    # colsample_bytree=2.0 is a LightGBM config error: the CLI writes error.txt and returns no
    # objective, which the sweeper records as a FAIL trial. Random sampler seed 0 draws 2.0
    # then 0.5 (optuna 2.10.1; it is the only sampled key), so the failure comes first and the
    # sweep must go on.
    sweep(tmp_path, small_data_dir, "sweep", "model=lgbm", "hydra/sweeper=optuna",
          "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
          "hydra.sweeper.direction=maximize", "hydra.sweeper.study_name=failing",
          "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
          "hydra.sweeper.storage=sqlite:///optuna.db",
          "model.params.colsample_bytree=choice(0.5, 2.0)", "model.num_boost_round=20", CALLBACK)

    study = optuna.load_study(study_name="failing", storage=f"sqlite:///{tmp_path}/optuna.db")
    states = {t.params["model.params.colsample_bytree"]: t.state for t in study.trials}
    assert states == {2.0: optuna.trial.TrialState.FAIL, 0.5: optuna.trial.TrialState.COMPLETE}
    assert study.trials[0].state == optuna.trial.TrialState.FAIL  # failure first, then more

    failed_job = tmp_path / "sweep" / "0-lgbm"
    assert not (failed_job / "metrics.json").exists()
    error = (failed_job / "error.txt").read_text().strip()
    assert "feature_fraction" in error and "\n" not in error
    table = pl.read_csv(tmp_path / "sweep" / "summary.csv")
    assert table["status"].to_list() == ["ok", "failed"]
    assert table["error"][1] == error
