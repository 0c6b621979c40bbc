"""End to end through `python run.py`, as a user runs it: artifacts, numbers, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import (
    FAST_GBDT,
    SMALL_DATA,
    compose,
    error_line,
    read_metrics,
    run_cli,
    run_in_process,
)

CONTRACT_METRICS = {
    "corr_mean", "corr_std", "corr_sharpe", "corr_max_drawdown", "mmc_mean", "mmc_std",
    "mmc_sharpe", "fnc_mean", "max_feature_exposure", "n_eras",
}


def small(data_dir: Path, *extra: str) -> list[str]:
    return [*SMALL_DATA, *FAST_GBDT, f"data.dir={data_dir}", *extra]


@pytest.fixture(scope="module")
def lgbm_run(trained_run):
    """The shared `python run.py` train run: `small(data_dir)` (and scoring.recent_eras=5)."""
    return trained_run


@pytest.mark.slow
def test_help_lists_config_groups():
    proc = run_cli(["--help"])
    assert proc.returncode == 0
    for group in ("data:", "features:", "target:", "model:", "trainer:", "postprocess:",
                  "staking:", "logger:"):
        assert group in proc.stdout
    assert "lgbm, " in proc.stdout and "xgboost" in proc.stdout


@pytest.mark.slow  # a fresh interpreter
def test_pipeline_import_pulls_no_heavy_library():
    code = ("import sys, numerlab.pipeline, numerlab.cli; "
            "print(sorted(m for m in ('torch','lightning','wandb','lightgbm','xgboost','numerapi')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_user_overrides_compose():
    cfg = compose(["model=xgboost", "features=medium", "target=cyrusd_20", "seed=3",
                   "data.era_stride=2"])
    assert cfg.model._target_.endswith("XGBModel")
    assert cfg.features.set == "medium"
    assert cfg.target.name == "target_cyrusd_20"
    assert cfg.seed == 3 and cfg.data.era_stride == 2


@pytest.mark.slow
def test_run_writes_the_artifact_contract(lgbm_run):
    run_dir, proc = lgbm_run
    for rel in ("metrics.json", "per_era.parquet", "predictions/validation.parquet",
                "predictions/live.parquet", "submission.csv", "model/numerlab_model.json",
                "plots/cumulative_scores.png", "plots/per_era_corr.png"):
        assert (run_dir / rel).is_file(), rel
    assert not list(run_dir.glob(".staging-*"))
    metrics = read_metrics(run_dir)
    assert CONTRACT_METRICS <= metrics.keys()
    assert metrics["n_eras"] == pl.read_parquet(run_dir / "per_era.parquet").height
    per_era = pl.read_parquet(run_dir / "per_era.parquet")
    assert {"era", "corr", "mmc", "fnc"} <= set(per_era.columns)
    validation = pl.read_parquet(run_dir / "predictions/validation.parquet")
    assert validation.columns[:4] == ["id", "era", "prediction", "target"]
    assert "meta_model" in validation.columns
    assert "CORR mean" in proc.stdout  # the terminal table
    png = (run_dir / "plots/cumulative_scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_synthetic_signal_is_learned(lgbm_run):
    metrics = read_metrics(lgbm_run[0])
    assert metrics["corr_mean"] > 0.005
    assert metrics["corr_sharpe"] > 0.1


@pytest.mark.slow
def test_metrics_agree_with_numerai_tools(lgbm_run):
    from numerai_tools.scoring import correlation_contribution, numerai_corr

    run_dir, _ = lgbm_run
    frame = pd.read_parquet(run_dir / "predictions/validation.parquet").set_index("id")
    corr, mmc = [], []
    for _, era in frame.groupby("era"):
        era = era.sort_index()
        corr.append(numerai_corr(era[["prediction"]], era["target"]).iloc[0])
        if era["meta_model"].notna().any():
            mmc.append(correlation_contribution(era[["prediction"]], era["meta_model"],
                                                era["target"]).iloc[0])
    metrics = read_metrics(run_dir)
    assert abs(metrics["corr_mean"] - np.mean(corr)) < 1e-9
    assert abs(metrics["corr_std"] - np.std(corr)) < 1e-9
    assert abs(metrics["mmc_mean"] - np.mean(mmc)) < 1e-9
    assert metrics["mmc_n_eras"] == len(mmc) < metrics["n_eras"]


@pytest.mark.slow
def test_submission_is_valid(lgbm_run, small_data_dir):
    run_dir, _ = lgbm_run
    text = (run_dir / "submission.csv").read_text().splitlines()
    assert text[0] == "id,prediction"
    sub = pd.read_csv(run_dir / "submission.csv")
    live_ids = pd.read_parquet(small_data_dir / "live.parquet", columns=[]).index
    if "id" in pd.read_parquet(small_data_dir / "live.parquet").columns:
        live_ids = pd.read_parquet(small_data_dir / "live.parquet")["id"]
    assert sorted(sub["id"]) == sorted(map(str, live_ids))
    assert sub["prediction"].between(0, 1).all() and sub["prediction"].notna().all()
    assert sub["prediction"].nunique() > 1


@pytest.mark.slow
def test_saved_model_reproduces_validation_predictions(lgbm_run, small_data_dir):
    from numerlab import data
    from numerlab.data.source import build_source
    from numerlab.models.base import load_model

    run_dir, _ = lgbm_run
    model, feature_names = load_model(run_dir / "model")
    cfg = compose(small(small_data_dir))
    splits = data.load_splits(build_source(cfg.data), cfg.features, cfg.target)
    assert feature_names == splits.feature_names
    saved = pl.read_parquet(run_dir / "predictions/validation.parquet")
    assert saved["id"].to_list() == splits.validation.ids.tolist()
    np.testing.assert_allclose(model.predict(splits.validation.features),
                               saved["prediction"].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_xgboost_with_user_overrides(tmp_path, small_data_dir):
    run_dir = tmp_path / "xgb"
    proc = run_in_process(small(small_data_dir, "model=xgboost", "features=medium",
                                "target=cyrusd_20", "seed=3", "data.era_stride=2",
                                f"hydra.run.dir={run_dir}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["model"] == "xgboost"
    assert metrics["target"] == "target_cyrusd_20"
    assert metrics["seed"] == 3
    frame = pl.read_parquet(run_dir / "predictions/validation.parquet")
    assert frame["target"].is_not_nan().all()


@pytest.mark.slow
def test_same_seed_same_numbers_in_process(tmp_path, small_data_dir):
    from numerlab.cli import run_job

    cfg = compose(small(small_data_dir, "seed=0", "model.params.subsample=0.7",
                        "+model.params.subsample_freq=1"))
    first = run_job(cfg, tmp_path / "a")
    second = run_job(cfg, tmp_path / "b")
    other = run_job(compose(small(small_data_dir, "seed=1", "model.params.subsample=0.7",
                                       "+model.params.subsample_freq=1")), tmp_path / "c")
    assert first["corr_mean"] == second["corr_mean"]
    assert first["corr_mean"] != other["corr_mean"]


@pytest.mark.slow
def test_neutralization_lowers_feature_exposure(tmp_path, small_data_dir, trained_run):
    from numerlab.cli import run_job

    plain = read_metrics(trained_run[0])  # the same config, not neutralized
    neutral = run_job(compose(small(small_data_dir, "postprocess=neutralize",
                                         "postprocess.proportion=1.0")), tmp_path / "neutral")
    assert neutral["max_feature_exposure"] < plain["max_feature_exposure"] / 2


# --- bad input: one clear line, non-zero exit, no artifacts presented as complete ---------

def assert_clean_failure(proc, run_dir: Path, *needles: str) -> None:
    message = error_line(proc)
    for needle in needles:
        assert needle in message, message
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("**/*.parquet"))


def test_unknown_group_option_is_named(tmp_path):
    proc = run_in_process(["model=nope", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "model/nope" in proc.stderr
    assert "lgbm" in proc.stderr  # the available options are listed


@pytest.mark.parametrize("override, needle", [
    ("features.set=nope", "nope"),
    ("target.name=target_nope", "target_nope"),
    ("data.embargo_eras=1000", "embargo"),
])
def test_bad_names_fail_cleanly(tmp_path, small_data_dir, override, needle):
    proc = run_in_process(small(small_data_dir, override, f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(proc, tmp_path / "run", needle)


@pytest.mark.parametrize("overrides, needle", [
    (["model.params.learning_rate=abc"], "learning_rate='abc'"),
    (["model=xgboost", "model.params.max_depth=abc"], "max_depth"),
])
def test_bad_hyperparameter_is_named(tmp_path, small_data_dir, overrides, needle):
    proc = run_in_process(small(small_data_dir, *overrides, f"hydra.run.dir={tmp_path / 'run'}"))
    assert_clean_failure(proc, tmp_path / "run", needle)


@pytest.fixture
def v5_copy(tmp_path, small_data_dir) -> Path:
    from numerlab import data

    data.prepare(compose(small(small_data_dir)).data)
    copy = tmp_path / "v5"
    shutil.copytree(small_data_dir, copy)
    return copy


def v5_args(v5_dir: Path, run_dir: Path) -> list[str]:
    return ["data=v5", f"data.dir={v5_dir}", "data.era_stride=1", *FAST_GBDT,
            f"hydra.run.dir={run_dir}"]


@pytest.mark.parametrize("door", [run_in_process, pytest.param(run_cli, marks=pytest.mark.slow)])
def test_missing_parquet_is_named(tmp_path, v5_copy, door):
    (v5_copy / "train.parquet").unlink()
    proc = door(v5_args(v5_copy, tmp_path / "run"))
    assert_clean_failure(proc, tmp_path / "run", "train.parquet")


def test_corrupt_parquet_is_named(tmp_path, v5_copy):
    (v5_copy / "validation.parquet").write_bytes(b"PAR1 this is not parquet")
    proc = run_in_process(v5_args(v5_copy, tmp_path / "run"))
    assert_clean_failure(proc, tmp_path / "run", "validation.parquet")


def test_features_json_without_the_set_is_named(tmp_path, v5_copy):
    meta = json.loads((v5_copy / "features.json").read_text())
    del meta["feature_sets"]["medium"]
    (v5_copy / "features.json").write_text(json.dumps(meta))
    proc = run_in_process([*v5_args(v5_copy, tmp_path / "run"), "features=medium"])
    assert_clean_failure(proc, tmp_path / "run", "medium")


def test_single_row_era_is_named(tmp_path, v5_copy):
    frame = pl.read_parquet(v5_copy / "validation.parquet")
    eras = frame.filter(pl.col("data_type") == "validation")["era"].unique().sort()
    lonely = eras[-1]
    first = frame.filter(pl.col("era") == lonely).head(1)
    frame = pl.concat([frame.filter(pl.col("era") != lonely), first])
    frame.write_parquet(v5_copy / "validation.parquet")
    proc = run_in_process(v5_args(v5_copy, tmp_path / "run"))
    assert_clean_failure(proc, tmp_path / "run", lonely)
