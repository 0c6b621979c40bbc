"""What can be scored is known before the first fit: MMC and BMC on the eras the meta model
and the benchmark cover, a reference that covers none of the scored eras dropped with a
warning, and one error line before any fit where the run asked for what cannot be scored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from conftest import FAST_GBDT, error_line, read_metrics, run_in_process

V5 = ["data=v5", "data.era_stride=1", *FAST_GBDT]
CV = ["task=cv", "cv.n_splits=3", "cv.embargo_eras=4"]
FIT_LOG = "fitting "  # pipeline.fit_model's log line: a fit started


def run(tmp_path: Path, v5_dir: Path, *overrides: str):
    run_dir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"  # a new dir each run
    proc = run_in_process([*V5, f"data.dir={v5_dir}", f"hydra.run.dir={run_dir}", *overrides])
    return run_dir, proc


def refused_before_fit(tmp_path: Path, v5_dir: Path, *overrides: str) -> str:
    """The run's one error line; nothing was fitted and no metrics written."""
    run_dir, proc = run(tmp_path, v5_dir, *overrides)
    line = error_line(proc)
    assert FIT_LOG not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert not (run_dir / "metrics.json").exists()
    return line


def succeeded(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def rename_ids(path: Path) -> None:
    """The file's ids made ones no scored row has (as a file of another data version)."""
    frame = pd.read_parquet(path)
    frame.index = "other-" + frame.index
    frame.to_parquet(path)


# --- BMC on the eras the benchmark covers -------------------------------------------------

@pytest.mark.slow
def test_cv_with_validation_benchmarks_only_runs_without_bmc(tmp_path, v5_copy):
    """A partial download: validation benchmarks but no train ones. CV over training eras
    cannot score BMC: it says so before the first fold and scores the rest."""
    (v5_copy / "train_benchmark_models.parquet").unlink()
    run_dir, proc = run(tmp_path, v5_copy, *CV)
    output = succeeded(proc)
    assert "validation_benchmark_models.parquet covers none of the" in output
    metrics = read_metrics(run_dir)
    assert metrics["n_folds"] == 3 and metrics["corr_mean"] is not None
    assert not [k for k in metrics if "bmc" in k or "benchmark" in k]
    assert output.index("covers none of the") < output.index(FIT_LOG)


@pytest.mark.slow
def test_cv_over_all_eras_scores_bmc_on_the_validation_eras_it_covers(tmp_path, v5_copy):
    from numerai_tools.scoring import correlation_contribution

    (v5_copy / "train_benchmark_models.parquet").unlink()
    run_dir, proc = run(tmp_path, v5_copy, *CV, "cv.eras=all")
    succeeded(proc)
    metrics = read_metrics(run_dir)
    oof = pl.read_parquet(run_dir / "predictions/oof.parquet").to_pandas()
    covered = oof[oof["benchmark"].notna()]
    validation_eras = set(pd.read_parquet(v5_copy / "validation.parquet",
                                          columns=["era"])["era"])
    assert 0 < covered["era"].nunique() < oof["era"].nunique()
    assert set(covered["era"]) <= validation_eras
    per_era = pl.read_parquet(run_dir / "per_era.parquet").to_pandas().set_index("era")
    for era, rows in covered.groupby("era"):
        expected = correlation_contribution(rows[["prediction"]], rows["benchmark"],
                                            rows["target"])["prediction"]
        assert per_era.loc[era, "bmc"] == pytest.approx(expected, abs=1e-12), era
    assert metrics["bmc_n_eras"] == covered["era"].nunique()
    assert metrics["n_eras"] == oof["era"].nunique()


def test_a_named_benchmark_that_covers_no_scored_era_is_refused_before_the_fit(
        tmp_path, v5_copy):
    (v5_copy / "train_benchmark_models.parquet").unlink()
    line = refused_before_fit(tmp_path, v5_copy, *CV, "scoring.benchmark=v53_lgbm_ender20")
    assert "scoring.benchmark=v53_lgbm_ender20" in line
    assert "validation_benchmark_models.parquet covers none of the" in line
    assert "cv.eras=all" in line


def test_benchmark_ids_of_another_version_auto_skips_bmc_a_named_column_is_refused(
        tmp_path, v5_copy):
    for name in ("train_benchmark_models.parquet", "validation_benchmark_models.parquet"):
        rename_ids(v5_copy / name)
    line = refused_before_fit(tmp_path, v5_copy, "scoring.benchmark=v53_lgbm_ender20")
    assert "covers none of the" in line and "scoring.benchmark=v53_lgbm_ender20" in line
    run_dir, proc = run(tmp_path, v5_copy)  # scoring.benchmark=auto
    assert "covers none of the" in succeeded(proc)
    metrics = read_metrics(run_dir)
    assert "bmc_mean" not in metrics and "benchmark" not in metrics
    assert metrics["mmc_n_eras"] > 0


# --- the meta model -----------------------------------------------------------------------

def test_a_meta_model_that_matches_no_scored_row_is_said_before_the_fit(tmp_path, v5_copy):
    rename_ids(v5_copy / "meta_model.parquet")
    run_dir, proc = run(tmp_path, v5_copy)
    output = succeeded(proc)
    warning = "meta_model.parquet covers none of the 12 eras this run scores"
    assert warning in output and "payout counts CORR alone" in output
    assert output.index(warning) < output.index(FIT_LOG)
    assert not [k for k in read_metrics(run_dir) if "mmc" in k]


@pytest.mark.parametrize("metric", ["mmc_mean", "recent_mmc_sharpe", "payout"])
def test_an_objective_needing_a_meta_model_that_covers_nothing_fails_before_the_fit(
        tmp_path, v5_copy, metric):
    rename_ids(v5_copy / "meta_model.parquet")
    line = refused_before_fit(tmp_path, v5_copy, f"optimized_metric={metric}")
    assert f"optimized_metric={metric} cannot be scored" in line
    assert "meta_model.parquet covers none of the 12 eras" in line


def test_one_of_several_objectives_needing_mmc_fails_before_the_fit(tmp_path, v5_copy):
    rename_ids(v5_copy / "meta_model.parquet")
    line = refused_before_fit(tmp_path, v5_copy,
                              "optimized_metric={corr_sharpe:maximize,mmc_mean:maximize}")
    assert "optimized_metric=mmc_mean cannot be scored" in line


def test_an_objective_needing_mmc_without_a_meta_model_file_fails_before_the_fit(
        tmp_path, v5_copy):
    (v5_copy / "meta_model.parquet").unlink()
    line = refused_before_fit(tmp_path, v5_copy, "optimized_metric=mmc_sharpe")
    assert "optimized_metric=mmc_sharpe cannot be scored" in line
    assert "no meta_model.parquet" in line


def test_an_objective_needing_bmc_without_a_benchmark_fails_before_the_fit(tmp_path, v5_copy):
    (v5_copy / "train_benchmark_models.parquet").unlink()
    line = refused_before_fit(tmp_path, v5_copy, *CV, "optimized_metric=bmc_mean")
    assert "optimized_metric=bmc_mean cannot be scored" in line
    assert "covers none of the" in line


@pytest.mark.slow
def test_cv_over_training_eras_has_no_mmc_and_says_so(tmp_path, v5_copy):
    """The synthetic meta model, as Numerai's, covers validation eras only."""
    run_dir, proc = run(tmp_path, v5_copy, *CV, "scoring.benchmark=null")
    assert "meta_model.parquet covers none of the" in succeeded(proc)
    assert not [k for k in read_metrics(run_dir) if "mmc" in k]
    line = refused_before_fit(tmp_path, v5_copy, *CV, "optimized_metric=mmc_mean")
    assert "cv.eras=all" in line


@pytest.mark.slow
def test_every_job_of_a_sweep_on_mmc_fails_before_its_fit(tmp_path, v5_copy):
    """A sweep on mmc_mean with a meta model of another data version: each job stops with
    the one line before fitting (what the sweep then exits with is the launcher's part)."""
    rename_ids(v5_copy / "meta_model.parquet")
    sweep = tmp_path / "sweep"
    run_in_process(["-m", *V5, f"data.dir={v5_copy}", "model.num_boost_round=20,40",
                    "optimized_metric=mmc_mean", f"hydra.sweep.dir={sweep}"])
    errors = sorted(sweep.rglob("error.txt"))
    assert len(errors) == 2, sorted(p.name for p in sweep.rglob("*"))
    for error in errors:
        assert "optimized_metric=mmc_mean cannot be scored" in error.read_text()
        assert "meta_model.parquet covers none of the" in error.read_text()
        assert not (error.parent / "model").exists()
        assert FIT_LOG not in (error.parent / "run.log").read_text()
