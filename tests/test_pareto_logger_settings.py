"""The logger options' settings, without a run: a missing package is one line; a shared log
dir holds each run under its run dir's name."""

from __future__ import annotations

import pytest
from conftest import compose

from numerlab.errors import NumerlabError


def test_a_missing_logger_package_is_one_line(monkeypatch):
    import importlib.util

    from numerlab.tracking import build_tracker

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("mlflow")
                        else real_find_spec(name, *a))
    with pytest.raises(NumerlabError, match=r"^logger=mlflow needs the mlflow package"):
        build_tracker(compose(["logger=mlflow"]).logger)


def test_a_shared_log_dir_holds_each_run_under_its_run_dirs_name(tmp_path):
    from numerlab.loggers import CSVTracker, TensorBoardTracker

    run_dir = tmp_path / "outputs" / "2026-01-01" / "12-00-00-lgbm"
    for tracker in (CSVTracker(dir=str(tmp_path / "logs")),
                    TensorBoardTracker(dir=str(tmp_path / "logs"))):
        assert tracker.save_dir(run_dir) == (tmp_path / "logs", "12-00-00-lgbm")
    assert CSVTracker().save_dir(run_dir) == (run_dir / "csv_logs", "")
