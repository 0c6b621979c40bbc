"""task=live and task=export of a finished `model=ensemble` run (an LightGBM and an MLP
member) neutralized on another feature set than the model's, as a user runs them: real
`python run.py` on the small synthetic data, and the exported pickle run as Numerai runs it
(numerlab, polars, hydra... not importable)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import SMALL_DATA, run_cli
from test_export import BLOCKED, run_like_numerai

from numerlab.models.base import load_model

pytestmark = pytest.mark.slow  # `python run.py` train, live and export, the pickle run apart

MODEL_SET, POSTPROCESS_SET = "small", "medium"  # medium holds columns small does not
ENSEMBLE = ["model=ensemble", "model.members=[lgbm,mlp]", "model.weights=[2,1]",
            "model.combine=gaussian", "model.overrides.lgbm={num_boost_round:40}",
            "model.overrides.mlp={d_hidden:16}", "trainer.max_epochs=1"]


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def test_live_and_export_of_an_ensemble_neutralized_on_another_set(tmp_path, small_data_dir):
    train = tmp_path / "train"
    ok(run_cli([f"data.dir={small_data_dir}", *SMALL_DATA, *ENSEMBLE,
                f"features={MODEL_SET}", "postprocess=neutralize",
                f"postprocess.features={POSTPROCESS_SET}", f"hydra.run.dir={train}"]))
    _, model_features = load_model(train / "model")
    sets = json.loads((small_data_dir / "features.json").read_text())["feature_sets"]
    assert model_features == sets[MODEL_SET]
    assert set(sets[POSTPROCESS_SET]) - set(model_features)  # columns the model never saw
    trained = pl.read_parquet(train / "predictions" / "live.parquet")

    # task=live: the run's own live predictions, as a submission
    job = tmp_path / "live"
    ok(run_cli(["task=live", f"run_dir={train}", f"hydra.run.dir={job}"]))
    submission = pl.read_csv(job / "submission.csv", schema_overrides={"id": pl.String})
    assert submission.columns == ["id", "prediction"]
    assert submission["id"].to_list() == trained["id"].to_list()
    values = submission["prediction"].to_numpy()
    assert values.min() > 0 and values.max() < 1
    np.testing.assert_allclose(values, trained["prediction"].to_numpy(), rtol=0, atol=1e-6)

    # task=export: the pickle predicts live.parquet as the run did
    exported = tmp_path / "export"
    ok(run_cli(["task=export", f"run_dir={train}", f"hydra.run.dir={exported}"]))
    live_features = pd.read_parquet(small_data_dir / "live.parquet")
    assert live_features.index.name == "id"
    work = tmp_path / "numerai"
    work.mkdir()
    out = run_like_numerai(exported / "model.pkl", live_features, BLOCKED, work)
    ours = trained.to_pandas().set_index("id")["prediction"]
    np.testing.assert_allclose(out["prediction"].loc[ours.index].to_numpy(), ours.to_numpy(),
                               rtol=0, atol=1e-6)
