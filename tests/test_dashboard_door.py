"""The dashboard's doors: `python run.py task=dashboard` (conf/task/dashboard.yaml names the
floor-6 callable, run.py resolves it as any task's) and `python -m numerlab.dashboard`;
a bad setting is one line `error: ...` and exit status 2 before the screen opens."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, compose, error_line, run_in_process

from numerlab import registry
from numerlab.dashboard import run as dashboard_run
from numerlab.dashboard.__main__ import main


def test_task_dashboard_names_the_dashboard():
    cfg = compose(["task=dashboard"])
    assert registry.resolve(cfg.task, "task") is dashboard_run
    assert list(cfg.dashboard.runs) == ["outputs", "multirun"]


def test_run_py_task_dashboard_with_a_bad_setting_is_one_line(tmp_path):
    line = error_line(run_in_process(["task=dashboard", "dashboard.refresh_s=-1",
                                      "history.path=h.sqlite"], cwd=tmp_path))
    assert "dashboard.refresh_s" in line


def test_python_m_with_a_bad_setting_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard.direction=sideways"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "dashboard.direction" in err[0]
    assert main(["nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter
def test_python_m_numerlab_dashboard_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "numerlab.dashboard", "dashboard.runs=5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert "dashboard.runs" in error_line(proc)


def test_console_log_lines_are_held_off_the_screen_while_it_is_drawn(tmp_path):
    import logging

    from numerlab.dashboard import console_logging_off

    root = logging.getLogger()
    console, log_file = logging.StreamHandler(), logging.FileHandler(tmp_path / "run.log")
    root.addHandler(console)
    root.addHandler(log_file)
    try:
        with console_logging_off():
            assert console not in root.handlers and log_file in root.handlers
        assert console in root.handlers and log_file in root.handlers
    finally:
        root.removeHandler(console)
        root.removeHandler(log_file)
        log_file.close()
