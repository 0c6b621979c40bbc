"""task=compare: finished runs side by side, to choose the one to submit.

    python run.py task=compare runs='[outputs/a,outputs/b]'
    python run.py task=compare runs=multirun/2026-01-01/12-00-00

Writes compare.csv, compare_features.csv, plots/compare_*.png and report.html into this
job's dir (see `numerlab.compare`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from numerlab.errors import NumerlabError

log = logging.getLogger(__name__)


def run_paths(value: Any) -> list[str]:
    """`runs` as a list of paths: one path, or a list of them."""
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list | ListConfig) and value and all(
            isinstance(v, str) and v.strip() for v in value):
        return [str(v) for v in value]
    raise NumerlabError(f"runs={value!r}: name the run dirs to compare, e.g. "
                        f"runs='[outputs/a,outputs/b]' or runs=multirun/<date>/<time>")


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    from numerlab import compare

    paths = run_paths(cfg.get("runs"))
    compare.build_report(paths, Path(run_dir))
    log.info("report in %s", Path(run_dir) / compare.REPORT_HTML)
    return {}
