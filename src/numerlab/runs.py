"""A finished run's files, for the tasks that start from one (`run_dir=`: live, stake,
backtest, export) and the readers of run dirs: its saved config, its per-era scores, and the
checks that it holds what a task needs."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab.artifacts import METRICS, remove_stale_staging
from numerlab.errors import NumerlabError, message_line

log = logging.getLogger(__name__)


SAVED_CONFIG = Path(".hydra") / "config.yaml"


def finished_run(cfg: DictConfig, needs: str, job_dir: Path) -> Path:
    """`cfg.run_dir` checked to be a finished run (its metrics.json, as compare asks) that
    holds `needs` (a file or dir of the artifact contract), and not to be the dir this job
    writes into (it would replace the finished run's files)."""
    task = cfg.task.get("_target_", "task").rsplit(".", 2)[-2]
    value = cfg.get("run_dir")
    if not value:
        raise NumerlabError(f"run_dir is not set: task={task} needs a finished run's dir "
                            f"(run_dir=outputs/<date>/<time>-<model>)")
    return check_finished(value, needs, job_dir, task)


def check_finished(value: str | Path, needs: str, job_dir: Path, task: str,
                   key: str = "run_dir") -> Path:
    """The run dir `value` (the setting `key` names it) checked as `finished_run` does."""
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise NumerlabError(f"{key}={path} does not exist")
    if not (path / needs).exists():
        raise NumerlabError(f"{key}={path} has no {needs} (task={task} needs a finished "
                            f"run that wrote it)")
    if not (path / METRICS).is_file():
        # metrics.json moves in last (numerlab.artifacts.staged): without it the run was
        # cut off while its files moved in, and what is there may be half of two runs
        raise NumerlabError(f"{key}={path} has no {METRICS}: the run did not finish "
                            f"(task={task} needs a finished run)")
    if path.resolve() == Path(job_dir).resolve():
        raise NumerlabError(f"{key}={path} is also this job's output dir: task={task} "
                            f"would overwrite the finished run's files (drop hydra.run.dir)")
    for stale in remove_stale_staging(path):
        log.info("removed %s: a staging dir a killed run left", stale)
    return path


def read_saved_config(run_dir: Path) -> DictConfig | None:
    """The config a finished run ran with (`<run_dir>/.hydra/config.yaml`, as Hydra saved
    it: interpolations resolve on use); None where the run has none (e.g. DVC's
    artifacts/), a one-line error where it cannot be read."""
    path = Path(run_dir) / SAVED_CONFIG
    if not path.is_file():
        return None
    try:
        loaded_cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - any parse or OS error means the same here
        raise NumerlabError(f"cannot read {path}: {message_line(exc)}") from None
    if not isinstance(loaded_cfg, DictConfig):
        raise NumerlabError(f"{path}: must hold a mapping of config groups")
    return loaded_cfg


def saved_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The config a finished run ran with (`read_saved_config`); the current `cfg` where
    the run has none (e.g. DVC's artifacts/)."""
    saved = read_saved_config(run_dir)
    if saved is None:
        log.info("%s has no %s: using the current config's data, features, target and "
                 "postprocess", run_dir, SAVED_CONFIG)
        return cfg
    return saved


def option_name(cfg: DictConfig, group: str) -> str:
    """The chosen option of a config group (`staking=sharpe_scaled` -> "sharpe_scaled"),
    or its `_target_`'s class name outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        name = HydraConfig.get().runtime.choices.get(group)
        if name:
            return str(name)
    except ValueError:  # not under Hydra
        pass
    return str(OmegaConf.select(cfg, f"{group}._target_", default=group)).rsplit(".", 1)[-1]


def read_per_era(path: Path) -> pl.DataFrame:
    """A run's per_era.parquet (one row per scored era: era corr mmc ...)."""
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars/arrow/OS errors all mean "unreadable"
        raise NumerlabError(f"cannot read {path}: {message_line(exc)}") from None


def required_config(run_dir: Path) -> DictConfig:
    """The config the run ran with, from `<run_dir>/.hydra/config.yaml` (a DictConfig):
    `read_saved_config`, required."""
    cfg = read_saved_config(run_dir)
    if cfg is None:
        raise NumerlabError(f"{Path(run_dir) / SAVED_CONFIG}: missing, so the run's config "
                            f"(postprocess, data) is unknown")
    return cfg
