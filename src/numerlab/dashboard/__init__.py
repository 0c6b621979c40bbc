"""The terminal dashboard (#20): `python run.py task=dashboard` or
`python -m numerlab.dashboard [overrides]`.

Five panels: Round, Models, Live, Runs, Events (docs/dashboard.md). It is a reader: it calls
what the tasks call (numerlab.dashboard.data) and owns no numbers of its own. Textual is
imported only when the dashboard starts.

`run` is `task._target_` of conf/task/dashboard.yaml: the dashboard is a door (floor 6), so
no tasks module could import it; run.py resolves the target like any task's."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def build_app(cfg: DictConfig, run_dir: str | Path, **kwargs: Any) -> Any:
    """The DashboardApp of a composed config (its settings checked, the history and the
    local runs read: a bad setting is a one-line error before the screen opens)."""
    from numerlab.dashboard import data
    from numerlab.dashboard.app import DashboardApp

    options = data.read_settings(cfg)
    return DashboardApp(cfg, Path(run_dir), options, **kwargs)


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """task=dashboard: open the dashboard until `q`."""
    app = build_app(cfg, run_dir)
    with console_logging_off():
        app.run()
    return {}


@contextlib.contextmanager
def console_logging_off() -> Iterator[None]:
    """The root logger's console handlers (Hydra's) detached while the screen is drawn: a
    log line written to the terminal would tear it. File handlers (run.log) stay."""
    root = logging.getLogger()
    console = [h for h in root.handlers
               if type(h) is logging.StreamHandler]  # FileHandler is a subclass: kept
    for handler in console:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in console:
            root.addHandler(handler)
