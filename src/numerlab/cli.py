"""Glue between Hydra's job and a task: tracking, one-line errors, the sweep objective."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
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
    from numerlab import pipeline, registry, settings, tracking

    task = registry.resolve(cfg.task, "task")
    settings.keys("task", {k: v for k, v in cfg.task.items() if k != "_target_"},
                  getattr(sys.modules[task.__module__], "SETTINGS", ()))
    pipeline.check_settings(cfg)
    tracker = tracking.build_tracker(cfg.logger)
    with tracking.job(tracker, cfg, Path(run_dir), task_name(cfg)):
        return task(cfg, Path(run_dir)) or {}


def objective(cfg: DictConfig, metrics: dict[str, Any]
              ) -> float | tuple[float, ...] | None:
    """`optimized_metric` of the job's metrics, for a sweeper: one float, or a tuple with one
    value per objective when it names several (`numerlab.pareto`); None when the run wrote
    no metrics or an objective is null or NaN (the sweeper records a failed trial)."""
    from numerlab import pareto

    if not metrics:
        return None
    values = pareto.objective_values(pareto.config_objectives(cfg), metrics)
    if any(value is None for value in values):
        return None
    return values[0] if len(values) == 1 else tuple(values)


def numeric_keys(metrics: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in metrics.items()
                  if isinstance(v, int | float) and not isinstance(v, bool))


def run_hydra_job(cfg: DictConfig) -> float | tuple[float, ...] | None:
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
        append_to_log_files(f"error: {message}")
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # the sweep goes on: Optuna records the trial as failed (no value), the summary
            # lists the job with this line
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(message + "\n")
            return None
        sys.exit(2)


def append_to_log_files(line: str) -> None:
    """`line` as the last line of the job's log files (Hydra's `run.log`), as it stands: the
    log of a failed run ends with the error its terminal showed."""
    import logging

    record = logging.makeLogRecord({"name": "numerlab", "levelno": logging.ERROR,
                                    "levelname": "ERROR", "msg": line})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            formatter = handler.formatter
            handler.setFormatter(logging.Formatter("%(message)s"))
            try:
                handler.handle(record)
            finally:
                handler.setFormatter(formatter)


def run_name(task: Any, model: Any, target: Any = None) -> str:
    """What a run dir's name says after its time (conf/config.yaml `hydra.run.dir`, and a
    sweep job's `hydra.sweep.subdir` after its number): the model for task=train
    (`12-00-00-lgbm`); the task, and the model where the task fits the configured one
    (its module says `FITS_MODEL = True`), for any other (`12-00-00-cv-lgbm`,
    `12-00-00-status`, `12-00-00-live`: a live run predicts with `run_dir`'s model)."""
    if task == "train":
        return str(model)
    module_name = str(target or "").rpartition(".")[0]
    try:
        fits_model = bool(getattr(importlib.import_module(module_name), "FITS_MODEL", False))
    except ImportError:  # the task's own one-line error comes when the job starts
        fits_model = False
    return f"{task}-{model}" if fits_model else str(task)


RESOLVERS = {"numerlab.run_name": run_name}


def register_resolvers() -> None:
    """numerlab's OmegaConf resolvers, before Hydra composes conf/ (Hydra hands them on to
    the processes a launcher starts)."""
    from omegaconf import OmegaConf

    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


def main(hydra_main: Callable[[], Any]) -> None:
    """run.py's entry: its `@hydra.main` function, where a config Hydra cannot compose (an
    option no file in conf/ names, a key its group lacks, an override Hydra's grammar does
    not take) is one line `error: ...` with exit status 2, as every other bad input.
    HYDRA_FULL_ERROR=1 keeps Hydra's own report with its stack trace."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its report
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"error: {config_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


def config_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition report as one line: its lines joined as sentences,
    a tab-indented list (the available options) inline after them, the config search path
    and OmegaConf's key dump left out, the override Hydra could not parse named, and the
    OmegaConf cause (`Key 'foo' is not in struct`) in parentheses."""
    said, listed = _report_lines(str(exc))
    text = ". ".join(line.rstrip(".") for line in said) or type(exc).__name__
    if listed:
        text = f"{text}: {', '.join(listed)}"
    override = getattr(exc, "override", None)  # OverrideParseException
    if isinstance(override, str) and override not in text:
        text = f"override '{override}': {text}"
    cause = _report_lines(str(exc.__cause__))[0] if exc.__cause__ is not None else []
    return f"{text} ({cause[0]})" if cause else text


def _report_lines(report: str) -> tuple[list[str], list[str]]:
    """(sentences, listed items) of a Hydra/OmegaConf error report."""
    said, listed = [], []
    for raw in report.splitlines():
        line = raw.strip()
        if not line or line.startswith(("full_key:", "object_type", "reference_type")):
            continue
        if line.startswith(("Config search path", "provider=")):
            break
        (listed if raw.startswith("\t") else said).append(line.rstrip(":"))
    return said, listed
