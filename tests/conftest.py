"""Shared fixtures: small synthetic data and a way to run `python run.py` like a user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["fakes.numerai_server"]  # the `fake_numerai` fixture: Numerai on 127.0.0.1

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# Small enough for seconds-long runs, large enough for a measurable signal.
SMALL_DATA = [
    "data.synthetic.n_train_eras=48",
    "data.synthetic.n_validation_eras=16",
    "data.synthetic.rows_per_era=150",
    "data.synthetic.n_features=24",
    "data.synthetic.n_live_rows=100",
]
FAST_GBDT = ["model.num_boost_round=40"]


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """Directory the small synthetic dataset lives in (generated on first use)."""
    return tmp_path_factory.mktemp("data") / "synthetic-small"


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 300
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def compose(overrides: list[str] | None = None):
    """Compose conf/ with Hydra's real compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [])
