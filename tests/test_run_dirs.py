"""Run dirs say what they hold (`<time>-<model>` for task=train, `<time>-<task>-<model>` for
a task that fits the configured model, `<time>-<task>` for any other, sweep jobs likewise),
and a failed run's run.log ends with the error line the terminal showed."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from conftest import CONF_DIR, run_cli
from omegaconf import open_dict

from numerlab import cli

TIME = r"\d{2}-\d{2}-\d{2}"


def hydra_config(overrides: list[str]):
    """conf/ composed with its `hydra` node, as run.py composes it (resolvers registered)."""
    from hydra import compose, initialize_config_dir

    cli.register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = 3
    return cfg


@pytest.mark.parametrize("overrides, run_name, job_name", [
    ([], "lgbm", "3-lgbm"),
    (["model=xgboost"], "xgboost", "3-xgboost"),
    (["task=cv"], "cv-lgbm", "3-cv-lgbm"),
    (["task=cv", "model=mlp"], "cv-mlp", "3-cv-mlp"),
    # tasks that fit no configured model: the model would mislead (live uses run_dir's)
    (["task=status"], "status", "3-status"),
    (["task=live", "model=mlp"], "live", "3-live"),
    (["task=download"], "download", "3-download"),
])
def test_run_and_sweep_dirs_name_the_task_unless_it_is_train(overrides, run_name, job_name):
    cfg = hydra_config(overrides)
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent.parent.name == "outputs"
    assert re.fullmatch(rf"{TIME}-{run_name}", run_dir.name), run_dir
    assert cfg.hydra.sweep.subdir == job_name


def test_a_task_naming_its_own_run_dir_keeps_it():
    assert re.fullmatch(rf"{TIME}-compare", Path(hydra_config(["task=compare"]).hydra.run.dir)
                        .name)


def test_a_failed_job_ends_its_log_file_with_the_error_line(tmp_path, capsys):
    """In-process: run_hydra_job, as Hydra calls it, with Hydra's run.log handler."""
    from hydra.core.hydra_config import HydraConfig

    cfg = hydra_config(["task=export"])  # no run_dir: a one-line error before any work
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - "
                                           "%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    HydraConfig.instance().set_config(cfg)
    try:
        logging.getLogger("numerlab.test").warning("before the error")
        with open_dict(cfg):
            job_cfg = cfg.copy()
            del job_cfg["hydra"]
        with pytest.raises(SystemExit) as exit_info:
            cli.run_hydra_job(job_cfg)
    finally:
        root.removeHandler(handler)
        handler.close()
        HydraConfig.instance().cfg = None
    assert exit_info.value.code == 2
    (shown,) = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("error:")]
    assert "run_dir is not set" in shown
    lines = log_file.read_text().splitlines()
    assert lines[-1] == shown
    assert lines[0].endswith("- before the error")  # the log's own format is kept


@pytest.mark.slow
def test_a_failed_run_py_run_says_its_task_and_logs_its_error(tmp_path):
    """`python run.py task=export` without run_dir, in a fresh cwd: exit 2, one run dir
    `outputs/<date>/<time>-export` (it fits no configured model) whose run.log ends with the
    terminal's error line."""
    proc = run_cli(["task=export"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (shown,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(rf"{TIME}-export", run_dir.name), run_dir
    assert (run_dir / "run.log").read_text().splitlines()[-1] == shown
