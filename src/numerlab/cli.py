"""Glue between Hydra's job and a task: tracking, one-line errors, the sweep objective."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab.artifacts import ERROR_FILE
from numerlab.errors import NumerlabError


def task_name(cfg: DictConfig) -> str:
    """The task option's name (`task=cv` -> "cv"), for W&B's job_type."""
    try:
        from hydra.core.hydra_config import HydraConfig

        name = HydraConfig.get().runtime.choices.get("task")
        if name:
            return str(name)
    except ValueError:
        pass
    return str(cfg.task.get("_target_", "task")).rsplit(".", 2)[-2]


def run_job(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the configured task (`task._target_`) as one tracked job; returns its metrics."""
    from numerlab import registry, tracking

    task = registry.resolve(cfg.task, "task")
    tracker = tracking.build_tracker(cfg.logger)
    with tracking.job(tracker, cfg, Path(run_dir), task_name(cfg)):
        return task(cfg, Path(run_dir)) or {}


def objective(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """`optimized_metric` of the job's metrics, for a sweeper."""
    key = cfg.optimized_metric
    if key not in metrics:
        if not metrics:
            return None
        raise NumerlabError(f"optimized_metric={key} is not a key this run produced "
                            f"(numeric keys: {', '.join(numeric_keys(metrics))})")
    value = metrics[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NumerlabError(f"optimized_metric={key} is not numeric ({value!r})")
    return None if math.isnan(value) else float(value)


def numeric_keys(metrics: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in metrics.items()
                  if isinstance(v, int | float) and not isinstance(v, bool))


def run_hydra_job(cfg: DictConfig) -> float | None:
    """Run one Hydra job; a NumerlabError becomes `error: ...` on stderr and exit status 2
    (in a sweep, the job's error.txt, and the sweep goes on)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return objective(cfg, run_job(cfg, run_dir))
    except NumerlabError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # the sweep goes on: Optuna records the trial as failed (no value), the summary
            # lists the job with this line
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(message + "\n")
            return None
        sys.exit(2)
