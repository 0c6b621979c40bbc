"""Checks a sweep passes before its first job, and the `payout` metric a sweep may optimize.

`SweepChecksCallback` (a Hydra callback, `hydra.callbacks` in conf/config.yaml) runs once at
the start of every `python run.py -m ...`, before the sweeper creates a study or the launcher
starts a job. Each bad input below is one line, `error: ...` on stderr and exit status 2, and
nothing is written:

- `optimized_metric` that no job of the configured task produces;
- a search-space key (`hydra.sweeper.params`, or a swept command-line override) that is not
  a key of the composed config;
- an Optuna `hydra.sweeper.storage` that cannot be opened;
- a launcher whose plugin is not installed, or a Ray address (host:port) that does not
  answer within `CONNECT_TIMEOUT_S`;
- `logger.mode=online` without a W&B key.

Once every check passes, the sweep's composed config is saved as `multirun.yaml` in the sweep
dir (Hydra's basic sweeper writes the same file; the Optuna sweeper does not), so
`python -m numerlab.summary` and the W&B run names of every sweep can read it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from numerlab.artifacts import MULTIRUN_FILE
from numerlab.errors import NumerlabError, message_line

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0         # how long a Ray head or database gets to answer
RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
_ABSENT = object()


# --- what a run produces --------------------------------------------------------------------

def train_metric_keys(cfg: DictConfig) -> set[str]:
    """The numeric metrics.json keys task=train can write under `cfg`: what
    `scoring.summarize` makes of per-era CORR, MMC, BMC, FNC (scoring.fnc) and exposure
    (scoring.exposure) columns, plus payout, n_features and seed. MMC keys need a meta model
    in the data, which only the data can tell: they count as produced."""
    from numerlab import scoring
    from numerlab.backtest import PAYOUT_METRIC

    eras = 4
    columns: dict[str, Any] = {"era": [f"{e:04d}" for e in range(eras)],
                               "corr": [0.01, 0.03, -0.02, 0.02], "mmc": [0.01, -0.01, 0.0, 0.02]}
    if OmegaConf.select(cfg, "scoring.benchmark", default=None) is not None:
        columns.update(bmc=[0.01, 0.0, -0.01, 0.02], corr_with_benchmark=[0.5, 0.4, 0.6, 0.5],
                       benchmark_corr=[0.02, 0.01, 0.0, 0.03])
    if cfg.scoring.fnc:
        columns["fnc"] = [0.01, 0.02, 0.0, 0.01]
    if cfg.scoring.exposure:
        columns["feature_exposure"] = [0.1, 0.2, 0.15, 0.1]
    keys = set(scoring.summarize(pl.DataFrame(columns), recent_eras=cfg.scoring.recent_eras))
    return keys | {PAYOUT_METRIC, "n_features", "seed"}  # what pipeline.score adds


def task_metric_keys(cfg: DictConfig) -> set[str] | None:
    """The keys a run of the configured task writes into metrics.json: its module's
    `metric_keys(cfg)` (None: the task does not say)."""
    target = str(OmegaConf.select(cfg, "task._target_", default="") or "")
    module_name = target.rpartition(".")[0]
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError:
        return None
    declared = getattr(module, "metric_keys", None)
    return set(declared(cfg)) if callable(declared) else None


def check_optimized_metric(cfg: DictConfig) -> None:
    """`optimized_metric` names numeric keys the configured task writes (one, or several
    with their directions: `numerlab.pareto.objectives`)."""
    from numerlab.pareto import config_objectives

    metrics = [o.metric for o in config_objectives(cfg)]
    keys = task_metric_keys(cfg)
    if keys is None:
        log.warning("optimized_metric=%s not checked: task %s does not declare its metrics",
                    ",".join(metrics), OmegaConf.select(cfg, "task._target_", default="?"))
        return
    for metric in metrics:
        if metric not in keys:
            raise NumerlabError(f"optimized_metric={metric} is not a metrics.json key this "
                                f"task writes; choose one of {', '.join(sorted(keys))}")


# --- search space ---------------------------------------------------------------------------

def override_target(key: str) -> tuple[str, bool]:
    """(config key or group, must it exist) of an override's left side: `+key` and `++key`
    may add a key; `~key` deletes one, so it must exist; `group@package` names the group."""
    if key.startswith("+"):
        return key.lstrip("+"), False
    return key.lstrip("~").split("@", 1)[0], True


def has_key(cfg: DictConfig, key: str) -> bool:
    """`key` (dotted) is a key of `cfg` or a config group chosen in it (`model`,
    `hydra/launcher`)."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    if key in choices:
        return True
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False,
                            throw_on_resolution_failure=False) is not _ABSENT


def swept_keys(cfg: DictConfig) -> list[tuple[str, str]]:
    """(where, key) of every searched or swept key: `hydra.sweeper.params` and the
    command-line overrides of the multirun (`model.lr=0.1,0.2`, `model.lr=interval(...)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = [("hydra.sweeper.params", str(key)) for key in
             (OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {})]
    overrides = list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            found.append(("command line", override.input_line.split("=", 1)[0]))
    return found


def check_search_space(cfg: DictConfig) -> None:
    """Every key a sweep varies exists in the composed config (a typo would otherwise fail
    every job, or silently add an unused key)."""
    for where, raw_key in swept_keys(cfg):
        key, must_exist = override_target(raw_key)
        if must_exist and not has_key(cfg, key):
            parent = key.rpartition(".")[0]
            node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
            known = (f"; keys of {parent or 'the config'}: {', '.join(map(str, node))}"
                     if isinstance(node, DictConfig) else "")
            raise NumerlabError(f"{where}: {raw_key} is not a key of the config (to add a "
                                f"new key write +{key}){known}")


# --- Optuna storage -------------------------------------------------------------------------

def check_sqlite_path(database: str, url: str) -> None:
    """An SQLite file Optuna can open: an existing SQLite database, or a new file in an
    existing, writable dir. Nothing is created."""
    if database in ("", ":memory:"):
        return
    path = Path(database).expanduser()
    if path.exists():
        if not path.is_file():
            raise NumerlabError(f"hydra.sweeper.storage={url}: {path} is not a file")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                connection.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as exc:
            raise NumerlabError(f"hydra.sweeper.storage={url}: {path} cannot be opened as "
                                f"SQLite ({message_line(exc)})") from None
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NumerlabError(f"hydra.sweeper.storage={url}: directory {parent.resolve()} does "
                            "not exist (create it, or use sqlite:///optuna.db here)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NumerlabError(f"hydra.sweeper.storage={url}: directory {parent.resolve()} is "
                            "not writable")


def check_storage(cfg: DictConfig) -> None:
    """`hydra.sweeper.storage` (Optuna's RDB URL) can be opened: SQLite files are checked
    without creating them; other databases get one connection, with a timeout."""
    url = OmegaConf.select(cfg, "hydra.sweeper.storage", default=None)
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(str(url))
    except ArgumentError as exc:
        raise NumerlabError(f"hydra.sweeper.storage={url}: not a database URL "
                            f"({message_line(exc)}); e.g. sqlite:///optuna.db") from None
    if parsed.get_backend_name() == "sqlite":
        check_sqlite_path(parsed.database or "", str(url))
        return
    from sqlalchemy import create_engine

    try:
        engine = create_engine(parsed, connect_args={"connect_timeout": int(CONNECT_TIMEOUT_S)})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - a missing driver, a refused or timed-out connect
        raise NumerlabError(f"hydra.sweeper.storage={parsed.render_as_string()}: cannot "
                            f"connect ({message_line(exc)})") from None


# --- launchers ------------------------------------------------------------------------------

def check_launcher_installed(cfg: DictConfig) -> None:
    """The launcher's plugin (and Ray, for the Ray launcher) can be imported."""
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.hydra/launcher", default=None)
    module = target.rpartition(".")[0]
    needed = [module] + (["ray"] if target == RAY_LAUNCHER else [])
    for name in filter(None, needed):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            extra = " (pip install -e '.[ray]')" if target == RAY_LAUNCHER else ""
            raise NumerlabError(f"hydra/launcher={choice or target}: {name} is not "
                                f"installed{extra}")


def ray_head_address(address: Any) -> tuple[str, int] | None:
    """(host, port) of a Ray address numerlab can check by TCP: `host:port` or
    `ray://host:port`; None for null (a private local Ray) and `auto`/`local` (Ray finds
    the cluster itself)."""
    if address is None or str(address) in ("auto", "local"):
        return None
    text = str(address).removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise NumerlabError(f"hydra.launcher.ray.init.address={address}: expected host:port, "
                            "ray://host:port, auto or null")
    return host.strip("[]"), int(port)


def check_ray_address(cfg: DictConfig, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A Ray head at `hydra.launcher.ray.init.address` answers a TCP connect in time."""
    if OmegaConf.select(cfg, "hydra.launcher._target_", default=None) != RAY_LAUNCHER:
        return
    address = OmegaConf.select(cfg, "hydra.launcher.ray.init.address", default=None)
    head = ray_head_address(address)
    if head is None:
        return
    try:
        with socket.create_connection(head, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise NumerlabError(f"hydra.launcher.ray.init.address={address}: no Ray head answers "
                            f"at {head[0]}:{head[1]} within {timeout_s:g}s ({reason}); start "
                            f"one with `ray start --head --port={head[1]}` or use address=null "
                            "for a local Ray") from None


BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def serial_trials_warning(cfg: DictConfig) -> str | None:
    """Optuna hands its launcher `hydra.sweeper.n_jobs` trials at a time: with 1, a parallel
    launcher (joblib, Ray) runs one job at a time. The line to warn with, or None."""
    sweeper_jobs = OmegaConf.select(cfg, "hydra.sweeper.n_jobs", default=None)
    launcher = OmegaConf.select(cfg, "hydra.launcher._target_", default=BASIC_LAUNCHER)
    if sweeper_jobs != 1 or launcher == BASIC_LAUNCHER:
        return None
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.hydra/launcher", default=launcher)
    return (f"hydra.sweeper.n_jobs=1: Optuna passes one trial at a time to hydra/launcher="
            f"{choice}, so trials run one after another; set hydra.sweeper.n_jobs to the number "
            "of jobs to run at once")


# --- tracking -------------------------------------------------------------------------------

def check_tracker(cfg: DictConfig) -> None:
    """The logger can be built (W&B online needs a key): checked once, not in every job."""
    if "logger" in cfg:
        from numerlab.tracking import build_tracker

        build_tracker(cfg.logger)


CHECKS: tuple[Callable[[DictConfig], None], ...] = (
    check_optimized_metric, check_search_space, check_storage, check_launcher_installed,
    check_ray_address, check_tracker)


def check_sweep(cfg: DictConfig) -> None:
    """Every check above, in order; the first failure raises its one-line NumerlabError."""
    for check in CHECKS:
        check(cfg)


def save_sweep_config(cfg: DictConfig) -> Path:
    """The sweep's config as `<sweep dir>/multirun.yaml` (what Hydra's basic sweeper saves)."""
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / MULTIRUN_FILE
    OmegaConf.save(cfg, path)
    return path


class SweepChecksCallback(Callback):
    """Hydra callback: `check_sweep` before the first job of every multirun; a failure is
    `error: <one line>` on stderr and exit status 2, with nothing written."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_sweep(config)
        except NumerlabError as exc:
            print(f"error: {message_line(exc)}", file=sys.stderr)
            sys.exit(2)
        warning = serial_trials_warning(config)
        if warning:
            log.warning(warning)
        save_sweep_config(config)
