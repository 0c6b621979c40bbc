"""BMC against Numerai's benchmark models, end to end: equal to numerai-tools
`correlation_contribution` against the benchmark column; bad benchmark input is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import FAST_GBDT, compose, error_line, read_metrics, run_in_process

from numerlab.cli import run_job


@pytest.fixture(scope="module")
def bmc_run(trained_run) -> tuple[Path, dict]:
    """The shared train run (scoring.recent_eras=5) and its metrics."""
    run_dir, _ = trained_run
    return run_dir, read_metrics(run_dir)


@pytest.mark.slow
def test_bmc_equals_numerai_tools_per_era(bmc_run):
    from numerai_tools.scoring import correlation_contribution, numerai_corr

    run_dir, metrics = bmc_run
    assert metrics["benchmark"] == "v53_lgbm_ender20"  # auto: the main benchmark
    frame = pl.read_parquet(run_dir / "predictions/validation.parquet").to_pandas()
    per_era = pl.read_parquet(run_dir / "per_era.parquet").to_pandas().set_index("era")
    covered = frame[frame["benchmark"].notna()]
    assert covered["era"].nunique() > 0
    for era, rows in covered.groupby("era"):
        expected = correlation_contribution(rows[["prediction"]], rows["benchmark"],
                                            rows["target"])["prediction"]
        assert per_era.loc[era, "bmc"] == pytest.approx(expected, abs=1e-12), era
        own = numerai_corr(rows[["benchmark"]], rows["target"])["benchmark"]
        assert per_era.loc[era, "benchmark_corr"] == pytest.approx(own, abs=1e-12), era
    uncovered = sorted(set(frame["era"]) - set(covered["era"]))
    assert np.isnan(per_era.loc[uncovered, "bmc"].to_numpy(dtype=float)).all()
    bmc = per_era["bmc"].dropna()
    assert metrics["bmc_n_eras"] == len(bmc)
    assert metrics["bmc_mean"] == pytest.approx(bmc.mean(), abs=1e-12)


@pytest.mark.slow
def test_recent_keys_cover_the_last_eras(bmc_run):
    run_dir, metrics = bmc_run
    per_era = pl.read_parquet(run_dir / "per_era.parquet")
    last = per_era.tail(5)
    assert metrics["recent_n_eras"] == 5
    assert metrics["recent_corr_mean"] == pytest.approx(last["corr"].mean(), abs=1e-12)
    corr = last["corr"].to_numpy()
    assert metrics["recent_corr_sharpe"] == pytest.approx(corr.mean() / corr.std(), abs=1e-12)


def failure(tmp_path: Path, v5_dir: Path, *overrides: str) -> str:
    run_dir = tmp_path / "run"
    line = error_line(run_in_process(["data=v5", f"data.dir={v5_dir}", "data.era_stride=1",
                                      *FAST_GBDT, f"hydra.run.dir={run_dir}", *overrides]))
    assert not (run_dir / "metrics.json").exists()
    return line


def test_a_benchmark_column_the_file_lacks_lists_those_it_has(tmp_path, v5_copy):
    line = failure(tmp_path, v5_copy, "scoring.benchmark=v53_lgbm_nope20")
    assert "v53_lgbm_nope20" in line and "v53_lgbm_ender20" in line


def test_no_benchmark_file_means_no_bmc(tmp_path, v5_copy):
    for name in ("train_benchmark_models.parquet", "validation_benchmark_models.parquet"):
        (v5_copy / name).unlink()
    metrics = run_job(compose(["data=v5", f"data.dir={v5_copy}", "data.era_stride=1",
                               *FAST_GBDT]), tmp_path / "ok")
    assert "bmc_mean" not in metrics and metrics["corr_mean"] is not None
    assert "v53" in failure(tmp_path, v5_copy, "scoring.benchmark=v53_lgbm_ender20")
