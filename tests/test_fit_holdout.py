"""Nothing that is reported may influence the fit: early stopping and checkpoint choice look at
a holdout carved from the training eras, never at the eras a run scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import SMALL_DATA, compose

from numerlab.cli import run_job
from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.pipeline import split_holdout

EARLY_STOPPING = {
    "lgbm": ["model=lgbm", "model.num_boost_round=200", "model.early_stopping_rounds=5",
             "model.params.learning_rate=0.1"],
    "mlp": ["model=mlp", "trainer.max_epochs=4", "model.patience=1", "model.restore_best=true",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"],
}


@pytest.fixture(scope="module")
def data_pair(tmp_path_factory, small_data_dir) -> tuple[Path, Path]:
    """The small synthetic data as v5 files, and a copy whose validation targets are
    permuted within each validation era."""
    from numerlab import data

    data.prepare(compose([*SMALL_DATA, f"data.dir={small_data_dir}"]).data)
    root = tmp_path_factory.mktemp("leak")
    plain, permuted = root / "plain", root / "permuted"
    shutil.copytree(small_data_dir, plain)
    shutil.copytree(small_data_dir, permuted)
    frame = pd.read_parquet(permuted / "validation.parquet")
    targets = [c for c in frame.columns if c.startswith("target")]
    rng = np.random.default_rng(0)
    for rows in frame.groupby("era").indices.values():
        for column in targets:
            values = frame[column].to_numpy().copy()
            values[rows] = values[rng.permutation(rows)]
            frame[column] = values
    frame.to_parquet(permuted / "validation.parquet")
    assert not pd.read_parquet(plain / "validation.parquet")["target"].equals(frame["target"])
    return plain, permuted


def run(data_dir: Path, run_dir: Path, *overrides: str) -> dict:
    cfg = compose(["data=v5", f"data.dir={data_dir}", "data.era_stride=1",
                   "fit.holdout_eras=8", *overrides])
    return run_job(cfg, run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(EARLY_STOPPING))
def test_permuting_scored_targets_changes_no_prediction(model, data_pair, tmp_path):
    plain, permuted = data_pair
    first = run(plain, tmp_path / "plain", *EARLY_STOPPING[model])
    second = run(permuted, tmp_path / "permuted", *EARLY_STOPPING[model])
    for rel in ("predictions/validation.parquet", "predictions/live.parquet"):
        a = pl.read_parquet(tmp_path / "plain" / rel)
        b = pl.read_parquet(tmp_path / "permuted" / rel)
        assert a["id"].equals(b["id"]), rel
        np.testing.assert_array_equal(a["prediction"].to_numpy(), b["prediction"].to_numpy())
    assert first["corr_mean"] != second["corr_mean"]  # the scores did see the permutation
    if model == "lgbm":  # early stopping really stopped on the holdout
        meta = json.loads((tmp_path / "plain" / "model" / "params.json").read_text())
        assert meta["best_iteration"] is not None and meta["best_iteration"] < 200
    else:
        history = json.loads((tmp_path / "plain" / "model" / "network.json").read_text())
        assert all("holdout_corr" in h for h in history["history"])


def dataset(eras: list[str], rows: int = 3) -> Dataset:
    n = len(eras) * rows
    return Dataset(ids=np.array([f"id{i}" for i in range(n)], dtype=object),
                   eras=np.repeat(np.array(eras, dtype=object), rows),
                   features=np.zeros((n, 1), dtype=np.int8), feature_names=["f"],
                   target=np.zeros(n, dtype=np.float32), target_name="target")


def test_holdout_is_the_last_training_eras_after_an_embargo():
    train = dataset([f"{i:04d}" for i in range(1, 21)])
    fit, holdout = split_holdout(train, 5, 4)
    assert holdout.era_labels == [f"{i:04d}" for i in range(16, 21)]
    # eras 0012..0015 are embargoed: number + 4 must stay below the holdout's first (16)
    assert fit.era_labels == [f"{i:04d}" for i in range(1, 12)]
    assert split_holdout(train, 0, 4) == (train, None)


def test_holdout_that_leaves_nothing_to_fit_is_one_line():
    with pytest.raises(NumerlabError, match=r"fit.holdout_eras=8 with data.embargo_eras=4"):
        split_holdout(dataset([f"{i:04d}" for i in range(1, 11)]), 8, 4)
