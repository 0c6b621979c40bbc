"""task=cv end to end: walk-forward folds, out-of-fold scores equal to numerai-tools, the CV
score as a sweep objective, bad fold plans as one line before any fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose, error_line, run_cli, run_in_process

from numerlab.cli import run_job
from numerlab.eras import era_number

CV = ["task=cv", "cv.n_splits=3", "cv.embargo_eras=4"]


def small(data_dir: Path, *extra: str) -> list[str]:
    return [*SMALL_DATA, *FAST_GBDT, f"data.dir={data_dir}", *CV, *extra]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, small_data_dir) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("cv") / "run"
    return run_dir, run_job(compose(small(small_data_dir)), run_dir)


@pytest.mark.slow
def test_folds_are_walk_forward_with_the_embargo(cv_run):
    run_dir, metrics = cv_run
    folds = pl.read_parquet(run_dir / "folds.parquet")
    assert folds.height == 3 == metrics["n_folds"]
    assert {"fold", "train_first_era", "train_last_era", "n_train_eras", "test_first_era",
            "test_last_era", "n_test_eras", "corr_mean", "corr_sharpe", "mmc_mean",
            "bmc_mean"} <= set(folds.columns)
    oof = pl.read_parquet(run_dir / "predictions" / "oof.parquet")
    seen: set[str] = set()
    for row in folds.iter_rows(named=True):
        assert era_number(row["test_first_era"]) > era_number(row["train_last_era"]) + 4
        eras = set(oof.filter(pl.col("fold") == row["fold"])["era"].unique().to_list())
        assert not eras & seen  # no era in two test blocks
        assert min(eras, key=era_number) == row["test_first_era"]
        assert len(eras) == row["n_test_eras"]
        seen |= eras
    # expanding: every fold trains from the first era, on more eras than the one before
    assert folds["train_first_era"].n_unique() == 1
    assert folds["n_train_eras"].is_sorted() and folds["n_train_eras"].n_unique() == 3


@pytest.mark.slow
def test_out_of_fold_scores_equal_numerai_tools(cv_run):
    from numerai_tools.scoring import numerai_corr

    run_dir, metrics = cv_run
    oof = pl.read_parquet(run_dir / "predictions" / "oof.parquet").to_pandas()
    per_era = pl.read_parquet(run_dir / "per_era.parquet")
    expected = {era: numerai_corr(group[["prediction"]], group["target"])["prediction"]
                for era, group in oof.groupby("era")}
    assert per_era.height == len(expected) == metrics["n_eras"]
    for era, corr in zip(per_era["era"], per_era["corr"], strict=True):
        assert corr == pytest.approx(expected[era], abs=1e-12)
    assert metrics["corr_mean"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    fold_means = pl.read_parquet(run_dir / "folds.parquet")["corr_mean"].to_numpy()
    assert metrics["fold_corr_mean_std"] == pytest.approx(np.std(fold_means), abs=1e-12)
    assert (run_dir / "plots" / "cv_folds.png").is_file()


@pytest.mark.slow
def test_rolling_window_and_all_eras(tmp_path, small_data_dir):
    run_dir = tmp_path / "rolling"
    run_job(compose(small(small_data_dir, "cv.scheme=rolling", "cv.train_eras=10",
                          "cv.eras=all")), run_dir)
    folds = pl.read_parquet(run_dir / "folds.parquet")
    assert folds["n_train_eras"].to_list() == [10, 10, 10]
    # with cv.eras=all the last test block reaches into the validation eras
    train_eras = pd.read_parquet(small_data_dir / "train.parquet", columns=["era"])["era"]
    assert era_number(folds["test_last_era"][-1]) > era_number(train_eras.max())


@pytest.mark.parametrize("override, needle", [
    ("cv.n_splits=1", "cv.n_splits=1"),
    ("cv.embargo_eras=1000", "cv.embargo_eras=1000"),
    ("cv.scheme=sliding", "cv.scheme"),
    ("cv.eras=some", "cv.eras"),
])
def test_bad_fold_plans_are_one_line_before_any_fit(tmp_path, small_data_dir, override,
                                                     needle):
    run_dir = tmp_path / "run"
    proc = run_in_process([*small(small_data_dir, override), f"hydra.run.dir={run_dir}"])
    assert needle in error_line(proc)
    assert "fitting" not in proc.stdout + proc.stderr
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "folds.parquet").exists()


@pytest.mark.slow
def test_a_cv_sweep_optimizes_the_cv_score(tmp_path, small_data_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *small(small_data_dir, "model=lgbm,xgboost"),
                    f"hydra.sweep.dir={sweep}"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pl.read_csv(sweep / "summary.csv")
    assert summary.height == 2
    for row in summary.iter_rows(named=True):
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert metrics["n_folds"] == 3
        assert row["corr_sharpe"] == pytest.approx(metrics["corr_sharpe"], abs=1e-12)
    assert summary["corr_sharpe"].is_sorted(descending=True)


@pytest.mark.slow
def test_an_ensemble_is_a_model_like_any_other_in_cv(tmp_path, small_data_dir):
    run_dir = tmp_path / "ensemble"
    metrics = run_job(compose([*SMALL_DATA, f"data.dir={small_data_dir}", *CV,
                               "model=ensemble", "model.members=[lgbm,xgboost]",
                               "model.overrides.lgbm={num_boost_round:30}",
                               "model.overrides.xgboost={num_boost_round:30}"]), run_dir)
    assert metrics["model"] == "ensemble" and metrics["n_folds"] == 3
    oof = pl.read_parquet(run_dir / "predictions" / "oof.parquet")
    assert oof["prediction"].is_not_null().all() and oof["fold"].n_unique() == 3


@pytest.mark.slow
def test_cv_neutralizes_on_another_feature_set_as_train_does(tmp_path, small_data_dir):
    # small is a subset of medium: fully neutralized on medium, no exposure to small is left
    metrics = run_job(compose(small(small_data_dir, "postprocess=neutralize",
                                    "postprocess.features=medium",
                                    "postprocess.proportion=1.0")), tmp_path / "run")
    assert metrics["n_folds"] == 3
    assert metrics["max_feature_exposure"] < 1e-6


@pytest.mark.slow
def test_folds_fitted_in_parallel_processes_equal_folds_fitted_in_turn(tmp_path, cv_run,
                                                                       small_data_dir):
    """cv.n_jobs=2: the folds fit in spawned processes on the memory-mapped rows, after this
    process has already run LightGBM (cv_run, cv.n_jobs=1: a fork would risk its thread
    pool); same numbers."""
    one_dir, one = cv_run
    assert compose(small(small_data_dir)).cv.n_jobs == 1
    two = run_job(compose(small(small_data_dir, "cv.n_jobs=2")), tmp_path / "two")
    assert one["corr_mean"] == two["corr_mean"] and one["n_folds"] == two["n_folds"] == 3
    assert pl.read_parquet(one_dir / "predictions" / "oof.parquet").equals(
        pl.read_parquet(tmp_path / "two" / "predictions" / "oof.parquet"))
    assert not list((tmp_path / "two").glob(".parallel-*"))  # the scratch dir is gone
