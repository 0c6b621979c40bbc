"""W&B through `python run.py`, for real in offline mode: one run per Hydra job (a 2-job
multirun gives 2 runs in the sweep's group, named by their overrides, with the resolved
config and no secrets), Lightning's per-epoch curves and GBDT per-iteration holdout curves
in the run's history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import FAST_GBDT, ROOT, SMALL_DATA, read_metrics, run_cli
from test_tracking import FAKE_KEY, wandb_records

from numerlab.tracking import WANDB_INFO

pytestmark = pytest.mark.slow  # `python run.py` with W&B (its own wandb-core process)

# Offline W&B; a key in the environment that must never reach a file.
WANDB_ENV = {"PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "offline", "WANDB_API_KEY": FAKE_KEY,
             "WANDB_SILENT": "true"}
QUICK = [*SMALL_DATA, "scoring.fnc=false", "scoring.exposure=false"]


def offline_run(run_dir: Path) -> dict:
    """The one offline W&B run under `run_dir`, read back from its `.wandb` file once
    wandb-core has written its exit record: run id/group/name/job_type, config, summary,
    history rows (each a dict of the logged keys)."""
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(files[0])):
        assert time.monotonic() < deadline, "offline run never finished writing"
        time.sleep(0.2)
    run: dict = {"config": {}, "summary": {}, "history": []}
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, group=record.run.run_group,
                       name=record.run.display_name, job_type=record.run.job_type)
            run["config"].update({u.key: json.loads(u.value_json)
                                  for u in record.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            run["summary"].update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                                   for u in record.summary.update})
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.history.item})
    return run


def no_interpolations(value) -> bool:
    if isinstance(value, dict):
        return all(no_interpolations(v) for v in value.values())
    if isinstance(value, list):
        return all(no_interpolations(v) for v in value)
    return not (isinstance(value, str) and "${" in value)


def test_multirun_makes_one_grouped_run_per_job(tmp_path: Path, small_data_dir: Path):
    sweep_dir = tmp_path / "sweep-2026"
    proc = run_cli(["-m", "model=lgbm,xgboost", "logger=wandb", *QUICK, *FAST_GBDT,
                    f"data.dir={small_data_dir}", f"hydra.sweep.dir={sweep_dir}"],
                   cwd=tmp_path, env=WANDB_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]

    job_dirs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
    assert [p.name for p in job_dirs] == ["0-lgbm", "1-xgboost"]
    runs = {}
    for job_dir, model in zip(job_dirs, ["lgbm", "xgboost"], strict=True):
        run = offline_run(job_dir)
        info = json.loads((job_dir / WANDB_INFO).read_text())
        assert info["id"] == run["id"] and info["mode"] == "offline"
        assert Path(info["dir"]).parent == job_dir / "wandb"
        assert run["group"] == "sweep-2026" == info["group"]
        assert run["job_type"] == "train"
        # named by what tells the jobs apart, not by the overrides every job shares
        assert run["name"] == f"model={model}"
        assert run["config"]["model"]["name"] == model
        assert run["config"]["data"]["dir"] == str(small_data_dir)
        assert no_interpolations(run["config"]), run["config"]
        assert "logger" not in run["config"]
        assert run["summary"]["corr_sharpe"] == read_metrics(job_dir)["corr_sharpe"]
        runs[model] = run
    assert runs["lgbm"]["id"] != runs["xgboost"]["id"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_lightning_run_logs_a_row_per_epoch(tmp_path: Path, small_data_dir: Path):
    run_dir = tmp_path / "mlp"
    epochs = 3
    proc = run_cli(["model=mlp", "logger=wandb", "fit.holdout_eras=4", "trainer=cpu",
                    f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
                    "model.patience=null", *QUICK, f"data.dir={small_data_dir}",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=WANDB_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]

    run = offline_run(run_dir)
    assert run["job_type"] == "train" and run["group"] == "mlp"
    holdout_rows = [row for row in run["history"] if "holdout_corr" in row]
    loss_rows = [row for row in run["history"] if "train_loss" in row]
    assert len(holdout_rows) == epochs, run["history"]
    assert sorted(row["epoch"] for row in holdout_rows) == list(range(epochs))
    assert loss_rows and all(isinstance(row["train_loss"], float) for row in loss_rows)
    # the same curve Lightning wrote to the run dir's CSV log
    history = json.loads((run_dir / "model" / "network.json").read_text())["history"]
    assert [r["holdout_corr"] for r in holdout_rows] == pytest.approx(
        [r["holdout_corr"] for r in history])


@pytest.mark.parametrize("model,metric", [
    ("lgbm", "holdout/l2"), ("xgboost", "holdout/rmse")])
def test_gbdt_run_logs_a_row_per_iteration(tmp_path: Path, small_data_dir: Path, model: str,
                                           metric: str):
    run_dir = tmp_path / model
    rounds = 25
    proc = run_cli([f"model={model}", "logger=wandb", "fit.holdout_eras=4",
                    f"model.num_boost_round={rounds}", *QUICK, f"data.dir={small_data_dir}",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=WANDB_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]

    rows = [row for row in offline_run(run_dir)["history"] if metric in row]
    assert [row["iteration"] for row in rows] == list(range(1, rounds + 1))
    assert all(isinstance(row[metric], float) and row[metric] > 0 for row in rows)
    assert len({row[metric] for row in rows}) > 1  # a curve, not one value repeated
