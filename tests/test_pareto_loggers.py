"""logger=csv, logger=tensorboard, logger=mlflow on a real tiny LightGBM run and a real tiny
MLP run: each holds every numeric metrics.json key (read back with the logger's own reader:
the CSV file, TensorBoard's event reader, the MLflow client), the training curves, the
config, and no secret."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from conftest import FAST_GBDT, SMALL_DATA, compose

from numerlab.cli import run_job

pytestmark = pytest.mark.slow  # real fits (LightGBM, Lightning), MLflow's store

FAKE_SECRET = "fake-secret-0123456789abcdef0123456789abcdef"
TINY_MLP = ["model=mlp", "model.d_hidden=16", "model.n_layers=1", "model.batch_size=512",
            "trainer=cpu", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0",
            "fit.holdout_eras=4"]
MODELS = {"lgbm": [*FAST_GBDT, "fit.holdout_eras=4"], "mlp": TINY_MLP}


def numeric(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def csv_read(run_dir):
    """(final metrics: the last value of each key, curve keys, hparams)."""
    root = run_dir / "csv_logs"
    with (root / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    last: dict[str, float] = {}
    for row in rows:
        last.update({k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"})
    hparams = yaml.safe_load((root / "hparams.yaml").read_text())
    return last, set(last), hparams


def tensorboard_read(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    last = {tag: events.Scalars(tag)[-1].value for tag in tags}
    return last, set(tags), None


def mlflow_read(run_dir):
    from mlflow.tracking import MlflowClient

    info = json.loads((run_dir / "mlflow.json").read_text())
    run = MlflowClient(tracking_uri=info["tracking_uri"]).get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    return dict(run.data.metrics), set(run.data.metrics), run.data.params


READERS = {"csv": csv_read, "tensorboard": tensorboard_read, "mlflow": mlflow_read}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("logger", READERS)
def test_logger_writes_the_runs_metrics_and_curves_without_secrets(
        logger, model, tmp_path, small_data_dir, monkeypatch):
    monkeypatch.setenv("NUMERAI_SECRET_KEY", FAKE_SECRET)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_SECRET)
    cfg = compose([*SMALL_DATA, f"data.dir={small_data_dir}", *MODELS[model],
                   f"logger={logger}"])
    run_dir = tmp_path / "run"
    metrics = run_job(cfg, run_dir)

    final, keys, params = READERS[logger](run_dir)
    expected = numeric(metrics)
    assert expected and set(expected) <= keys
    for key, value in expected.items():
        assert final[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    # the training curves: the holdout metric per LightGBM iteration / per Lightning epoch
    curve = "holdout_corr" if model == "mlp" else "holdout/"
    assert any(k.startswith(curve) for k in keys), sorted(keys)
    if params is not None:  # the config, resolved, without the logger's settings
        flat = json.dumps(params)
        assert "learning_rate" in flat or "d_hidden" in flat
        assert "secret_key_env" not in flat
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path

