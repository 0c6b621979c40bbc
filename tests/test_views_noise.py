"""Noise: an offline W&B job prints no run history/summary, a sweep on an SQLite Optuna
study prints no Alembic lines, and W&B groups carry their date."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST_GBDT, SMALL_DATA, run_cli, run_in_process

from numerlab.tracking import dated_name, job_identity

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"
# W&B's own switches off, as a user's shell has them (a fresh process: W&B keeps its settings
# process-wide once set up)
WANDB_ENV = {"WANDB_SILENT": "false", "WANDB_QUIET": "false", "WANDB_MODE": "offline",
             "WANDB_API_KEY": FAKE_KEY}


def wandb_run(tmp_path: Path, *overrides: str):
    proc = run_cli([*SMALL_DATA, *FAST_GBDT, f"data.dir={tmp_path / 'data'}",
                    "logger=wandb", "logger.project=numerlab-test",
                    f"hydra.run.dir={tmp_path / 'outputs' / '2026-12-07' / 'run'}",
                    *overrides], env=WANDB_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow  # W&B starts its wandb-core process
def test_an_offline_wandb_job_prints_no_run_summary(tmp_path):
    quiet = wandb_run(tmp_path)
    assert "Run summary" not in quiet and "Run history" not in quiet, quiet[-3000:]
    assert "corr_mean" not in quiet.split("W&B")[-1]
    # where the offline run is saved is still said, once
    assert quiet.count("saved locally in") == 1, quiet[-3000:]
    loud = wandb_run(tmp_path, "logger.quiet=false")  # the check can see what it removes
    assert "Run summary" in loud


@pytest.mark.slow  # a real `python run.py -m` Optuna sweep
def test_an_sqlite_study_prints_no_alembic_lines(tmp_path):
    proc = run_in_process(["-m", "hparams_search=lgbm_optuna", "hydra.sweeper.n_trials=1",
                           "hydra.sweeper.storage=sqlite:///optuna.db",
                           "model.num_boost_round=choice(20, 40)", *SMALL_DATA,
                           f"data.dir={tmp_path / 'data'}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "optuna.db").is_file()
    output = proc.stdout + proc.stderr
    assert "Study name: lgbm_optuna" in output  # the sweeper's own lines are kept
    assert "alembic" not in output.lower(), [
        line for line in output.splitlines() if "alembic" in line.lower()][:5]


def test_wandb_groups_carry_the_date():
    assert dated_name(Path("multirun/2026-12-07/12-00-00")) == "2026-12-07_12-00-00"
    assert dated_name(Path("multirun/2026-12-08/12-00-00")) != dated_name(
        Path("multirun/2026-12-07/12-00-00"))
    assert dated_name(Path("sweeps/my-sweep")) == "my-sweep"
    assert dated_name(Path("runs/2026-12-07-run")) == "2026-12-07-run"
    identity = job_identity(Path("outputs/2026-12-07/12-00-00-lgbm"))  # outside Hydra
    assert identity["group"] == "2026-12-07_12-00-00-lgbm"
