"""The default demo learns: `python run.py` (synthetic data, LightGBM on features=small)
scores a CORR far above the same model fitted to targets shuffled within each era (a model
that learned nothing) and within sight of the synthetic benchmark; the benchmark is itself a
model that learned. CORRs are numerai-tools' (the oracle), not numerlab's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import compose, read_metrics, run_in_process
from numerai_tools import scoring as nt

from numerlab.data import layout
from numerlab.data.dataset import Dataset
from numerlab.models.base import FitContext, build_model

pytestmark = pytest.mark.slow  # the default run: data generation and a 300-round fit


def _corr_per_era(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby("era").apply(
        lambda era: nt.numerai_corr(era[[column]], era["target"]).iloc[0])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python run.py` with every default; only where it writes is moved."""
    tmp = tmp_path_factory.mktemp("demo")
    run_dir, data_dir = tmp / "run", tmp / "data"
    proc = run_in_process([f"hydra.run.dir={run_dir}", f"data.dir={data_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    validation = pd.read_parquet(run_dir / "predictions" / "validation.parquet")
    return run_dir, data_dir, validation.reset_index()


def _shuffled_target_corr(data_dir, validation: pd.DataFrame, tmp_path) -> pd.Series:
    """Per-era CORR of the default model config fitted to the training rows with their
    targets shuffled within each era: what a fit that learns nothing scores here."""
    cfg = compose()
    names = json.loads((data_dir / layout.FEATURES_FILE).read_text())["feature_sets"][
        cfg.features.set]
    train = pd.read_parquet(data_dir / layout.TRAIN_FILE, columns=["era", *names, "target"])
    rng = np.random.default_rng(0)
    shuffled = train.groupby("era")["target"].transform(
        lambda t: rng.permutation(t.to_numpy())).to_numpy(np.float32)
    model = build_model(cfg.model)
    model.fit(Dataset(ids=train.index.to_numpy(str), eras=train["era"].to_numpy(object),
                      features=np.ascontiguousarray(train[names].to_numpy(np.int8)),
                      feature_names=names, target=shuffled, target_name="target"),
              None, FitContext(seed=cfg.seed, run_dir=tmp_path))
    rows = pd.read_parquet(data_dir / layout.VALIDATION_FILE, columns=names).loc[
        validation["id"]]
    frame = validation[["era", "target"]].assign(
        baseline=model.predict(np.ascontiguousarray(rows.to_numpy(np.int8))))
    return _corr_per_era(frame, "baseline")


def test_the_default_run_learns_far_above_a_model_that_learned_nothing(default_run,
                                                                       tmp_path):
    run_dir, data_dir, validation = default_run
    learned = _corr_per_era(validation, "prediction")
    baseline = _shuffled_target_corr(data_dir, validation, tmp_path)
    assert len(learned) >= 30
    # a few times the nothing-learned model's CORR, and clear of the per-era noise
    assert learned.mean() > max(3 * abs(baseline.mean()), baseline.mean() + 0.03), (
        learned.mean(), baseline.mean())
    assert learned.mean() / learned.std(ddof=0) > 0.5, learned.describe()
    assert read_metrics(run_dir)["corr_mean"] == pytest.approx(learned.mean(), abs=1e-6)


def test_the_benchmark_is_a_model_within_sight_of_the_default_run(default_run):
    _, data_dir, validation = default_run
    learned = _corr_per_era(validation, "prediction").mean()
    benchmarks = pd.read_parquet(data_dir / layout.benchmark_file("validation"))
    frame = validation.merge(benchmarks.reset_index()[["id", "v53_lgbm_ender20"]], on="id")
    benchmark = _corr_per_era(frame, "v53_lgbm_ender20").mean()
    assert benchmark > 0.02, benchmark  # the benchmark learned too
    assert learned > 0.5 * benchmark, (learned, benchmark)
