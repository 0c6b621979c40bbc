"""Feature diagnostics: exposure per feature against numerai-tools era by era, gain
importance of real GBDT fits, features.parquet and the footer of a real run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import SMALL_DATA, run_in_process
from numerai_tools.scoring import pearson_correlation

from numerlab.data.dataset import Dataset
from numerlab.diagnostics import (
    feature_diagnostics,
    feature_exposures,
    footer,
    gain_importance,
    top_features,
)
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext
from numerlab.models.gbdt import LGBMModel, XGBModel


def test_feature_exposures_are_mean_abs_corr_per_era():
    rng = np.random.default_rng(11)
    eras = np.repeat([0, 1, 2], [60, 45, 80])
    features = rng.integers(0, 5, (len(eras), 6), dtype=np.int8)
    features[eras == 1, 4] = 2  # constant in one era: skipped there
    features[:, 5] = 3          # constant everywhere: undefined
    predictions = rng.normal(size=len(eras)) + 0.4 * features[:, 0] - 0.2 * features[:, 1]
    out = feature_exposures(predictions, features, eras, 3)
    for j in range(5):
        per_era = []
        for era in range(3):
            rows = eras == era
            if np.ptp(features[rows, j]) == 0:
                continue
            per_era.append(abs(pearson_correlation(pd.Series(predictions[rows]),
                                                   pd.Series(features[rows, j].astype(float)))))
        assert out[j] == pytest.approx(np.mean(per_era), abs=1e-12)
    assert np.isnan(out[5])


def _signal_data(n_eras: int = 20, rows: int = 200) -> Dataset:
    rng = np.random.default_rng(2)
    n = n_eras * rows
    features = rng.integers(0, 5, (n, 8), dtype=np.int8)
    target = (features[:, 3] / 4.0 + 0.1 * rng.normal(size=n)).astype(np.float32)
    return Dataset(ids=np.array([f"i{i}" for i in range(n)], dtype=object),
                   eras=np.repeat([f"{e:04d}" for e in range(n_eras)], rows).astype(object),
                   features=features, feature_names=[f"feature_{c}" for c in "abcdefgh"],
                   target=target, target_name="target")


@pytest.mark.parametrize("model", [
    LGBMModel({"objective": "regression", "num_threads": 1, "verbosity": -1}, 20, None),
    XGBModel({"objective": "reg:squarederror", "nthread": 1}, 20, None),
])
def test_gain_importance_finds_the_signal_feature(model):
    data = _signal_data()
    model.fit(data, None, FitContext(seed=0, run_dir=None))
    gain = gain_importance(model, 8)
    assert gain.sum() == pytest.approx(1.0)
    assert int(np.argmax(gain)) == 3 and gain[3] > 0.5


def test_gain_importance_is_none_without_a_booster():
    assert gain_importance(object(), 3) is None


def test_feature_diagnostics_checks_alignment_and_ranks():
    data = _signal_data(4, 50)
    frame = pl.DataFrame({"id": data.ids.astype(str), "prediction": data.target * 1.0})
    table = feature_diagnostics(object(), data, frame, n=3)
    assert table["kind"].to_list() == ["exposure"] * 3
    assert table["feature"][0] == "feature_d" and table["rank"].to_list() == [1, 2, 3]
    assert table["value"].is_sorted(descending=True)
    with pytest.raises(NumerlabError, match="not aligned"):
        feature_diagnostics(object(), data, frame.reverse(), n=3)


def test_top_features_and_footer():
    table = pl.concat([top_features("exposure", np.array([0.1, np.nan, 0.3]), ["a", "b", "c"]),
                       top_features("gain", np.array([0.5, 0.2, 0.3]),
                                    ["feature_a", "feature_b", "feature_c"])])
    assert table.filter(pl.col("kind") == "exposure")["feature"].to_list() == ["c", "a"]
    assert footer(table, n=2) == "top exposure: c 0.300, a 0.100\ntop gain: a 0.500, c 0.300"


@pytest.mark.slow  # a fit through run.py
def test_every_run_writes_features_parquet_and_prints_the_footer(tmp_path, small_data_dir):
    run_dir = tmp_path / "run"
    proc = run_in_process([*SMALL_DATA, f"data.dir={small_data_dir}", f"hydra.run.dir={run_dir}",
                           "model=xgboost", "model.num_boost_round=40"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pl.read_parquet(run_dir / "features.parquet")
    assert table.columns == ["kind", "rank", "feature", "value"]
    for kind in ("exposure", "gain"):
        part = table.filter(pl.col("kind") == kind)
        assert 0 < part.height <= 20 and part["value"].is_sorted(descending=True)
    assert "top exposure:" in proc.stdout and "top gain:" in proc.stdout
