"""Experiment tracking: what a `logger` option builds (`_target_` in conf/logger/).

A tracker is started when a job starts (before data loads) and finished when it ends, so
the jobs of a multirun never merge. `logger=wandb` makes one W&B run per Hydra job: offline
unless configured online, grouped by sweep, named by the job's overrides, with the resolved
config minus anything that looks like a secret. API keys come from the environment /
`wandb login`, never from configs.

A new tracker is one yaml file in conf/logger/ naming a `Tracker` subclass.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab.artifacts import MULTIRUN_FILE
from numerlab.errors import NumerlabError
from numerlab.settings import boolean, choice, text

SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|public_id)", re.IGNORECASE)
WANDB_INFO = "wandb.json"   # the run's W&B id, URL or offline dir, in the run dir
MODES = ("offline", "online", "disabled")


def scrub(value: Any) -> Any:
    """Drop every mapping key that names a secret, recursively."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def sweep_overrides(sweep_dir: Path) -> list[str]:
    """The multirun's own command-line overrides (`model=lgbm,xgboost`, `logger=wandb`), from
    the `multirun.yaml` Hydra's sweeper (or numerlab's sweep checks) saved in the sweep dir;
    [] when it is not there (a worker that does not share the sweep dir)."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    try:
        saved = OmegaConf.load(path)
        return [str(o) for o in OmegaConf.select(saved, "hydra.overrides.task", default=[])]
    except Exception:  # noqa: BLE001 - a missing or unreadable file only makes names longer
        return []


def override_meanings(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """(key, value) of each override as Hydra parses it, so `a=false` and the `a=False` a
    sweeper passes on to its jobs are the same; a sweep (`a=1,2`) has a sweep value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [(o.get_key_element(), repr(o.value())) for o in parsed]


def job_name(job_overrides: Sequence[str], shared: Sequence[str]) -> str:
    """A job's W&B name: its overrides minus Hydra's own and those the whole sweep was
    given with one value (`logger=wandb`, `data.dir=...`), joined by commas:
    `model=xgboost,features=medium`."""
    try:
        same = set(override_meanings(shared))
        meanings = override_meanings(job_overrides)
    except Exception:  # noqa: BLE001 - an override Hydra cannot parse here: keep it in the name
        same, meanings = set(), [(o, None) for o in job_overrides]
    return ",".join(o for o, meaning in zip(job_overrides, meanings, strict=True)
                    if not o.lstrip("+~").startswith("hydra") and meaning not in same)


DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def dated_name(path: Path) -> str:
    """A dir's name with the date it sits under when the name lacks one
    (`multirun/2026-01-02/12-00-00` -> `2026-01-02_12-00-00`): Hydra's dirs are named by
    time of day inside a dir per date, so the name alone repeats from day to day."""
    path = Path(path)
    if DATE.search(path.name) or not DATE.fullmatch(path.parent.name):
        return path.name
    return f"{path.parent.name}_{path.name}"


def job_identity(run_dir: Path) -> dict[str, str | None]:
    """group (the sweep dir's name in a multirun, else the run dir's, with its date:
    `dated_name`), name (`job_name`) and the Hydra job's number."""
    run_dir = Path(run_dir)
    group, name, job_num = dated_name(run_dir), run_dir.name, None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            group = dated_name(Path(hydra_cfg.sweep.dir))
            job_num = str(hydra_cfg.job.num)
            name = job_name(overrides, sweep_overrides(Path(hydra_cfg.sweep.dir))) or (
                f"job-{job_num}")
        else:
            name = job_name(overrides, ()) or name
    except ValueError:  # not under Hydra (DVC stages, tests)
        pass
    return {"group": group, "name": name, "job_num": job_num}


class Tracker:
    """No tracking (`logger=none`); the interface every tracker implements."""

    def start(self, cfg: DictConfig, run_dir: Path, job_type: str) -> None:
        """Called when the job starts, before data is loaded."""

    def lightning_logger(self) -> Any | None:
        """A Lightning logger for neural fits (per-epoch curves), or None."""
        return None

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """A row of training curves (GBDT iterations)."""

    def log_run(self, metrics: dict[str, Any], per_era: pl.DataFrame, plots: Sequence[Path],
                run_dir: Path) -> None:
        """The finished run: summary metrics, per-era table, plots, model and predictions."""

    def finish(self, failed: bool = False) -> None:
        """Called when the job ends, also after a failure."""


class NoTracker(Tracker):
    """logger=none: artifacts are still written to the run dir."""


class WandbTracker(Tracker):
    """One W&B run per job. `mode`: offline, online, disabled; the environment's WANDB_MODE
    wins when set. Online needs WANDB_API_KEY or `wandb login` first."""

    def __init__(self, project: str, entity: str | None, mode: str, group: str | None,
                 tags: Sequence[str], dir: str | None, log_model: bool,
                 quiet: bool = True) -> None:
        from_env = os.environ.get("WANDB_MODE")
        self.mode = choice("WANDB_MODE" if from_env else "logger.mode", from_env or mode, MODES)
        self.project = text("logger.project", project, what="the name of a W&B project")
        self.entity = entity
        self.group, self.tags, self.dir = group, [str(t) for t in tags or []], dir
        self.log_model = boolean("logger.log_model", log_model)
        self.quiet = boolean("logger.quiet", quiet)
        self.run = None
        self._lightning_logger = None

    def check(self) -> None:
        """Online without a key is one clear line, before any training."""
        if self.mode != "online" or os.environ.get("WANDB_API_KEY"):
            return
        import wandb

        try:
            # env, settings file or .netrc; no prompt, no server round trip
            has_key = wandb.login(prompt=False, verify=False)
        except Exception:  # noqa: BLE001 - an unreadable settings file means no usable key
            has_key = False
        if not has_key:
            raise NumerlabError("logger.mode=online but no W&B API key: set WANDB_API_KEY or "
                                "run `wandb login` (or use logger.mode=offline)")

    def start(self, cfg: DictConfig, run_dir: Path, job_type: str) -> None:
        import wandb

        self.check()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        identity = job_identity(run_dir)
        config = scrub(OmegaConf.to_container(cfg, resolve=True))
        config.pop("logger", None)
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode,
            group=self.group or identity["group"], job_type=job_type,
            name=identity["name"], tags=self.tags, dir=str(self.dir or run_dir),
            config=config, reinit="finish_previous",
            # quiet: no run history/summary footer per job (the run dir's metrics.json and
            # wandb.json have it); the line saying where an offline run is saved stays
            settings=wandb.Settings(quiet=self.quiet),
        )
        info = {"id": self.run.id, "project": self.project, "group": self.run.group,
                "name": self.run.name, "mode": self.mode,
                "url": getattr(self.run, "url", None) if self.mode == "online" else None,
                "dir": str(Path(self.run.dir).parent)}
        (run_dir / WANDB_INFO).write_text(json.dumps(info, indent=1) + "\n")

    def lightning_logger(self) -> Any | None:
        if self.run is None:
            return None
        if self._lightning_logger is None:
            from lightning.pytorch.loggers import WandbLogger

            # wraps the run already started: Lightning's per-epoch curves land in it
            self._lightning_logger = WandbLogger(experiment=self.run, log_model=False)
        return self._lightning_logger

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values)

    def log_run(self, metrics: dict[str, Any], per_era: pl.DataFrame, plots: Sequence[Path],
                run_dir: Path) -> None:
        import wandb

        if self.run is None:
            return
        self.run.define_metric("era_index")
        self.run.define_metric("era/*", step_metric="era_index")
        for index, row in enumerate(per_era.iter_rows(named=True)):
            self.run.log({"era_index": index,
                          **{f"era/{k}": v for k, v in row.items() if k != "era"}})
        self.run.log({"per_era": wandb.Table(dataframe=per_era.to_pandas())})
        self.run.log({f"plots/{Path(p).stem}": wandb.Image(str(p)) for p in plots})
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})
        if self.log_model:
            artifact = wandb.Artifact(f"run-{self.run.id}", type="model",
                                      metadata={k: v for k, v in metrics.items()
                                                if isinstance(v, (int, float, str))})
            for sub in ("model", "predictions"):
                if (Path(run_dir) / sub).is_dir():
                    artifact.add_dir(str(Path(run_dir) / sub), name=sub)
            self.run.log_artifact(artifact)

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


_ACTIVE: list[Tracker] = []


def active() -> Tracker:
    """The tracker of the job running now (a NoTracker outside a job)."""
    return _ACTIVE[-1] if _ACTIVE else NoTracker()


@contextmanager
def job(tracker: Tracker, cfg: DictConfig, run_dir: Path, job_type: str) -> Iterator[Tracker]:
    """Start `tracker` for one job, make it `active()`, finish it at the end (as failed
    when the job raised)."""
    tracker.start(cfg, Path(run_dir), job_type)
    _ACTIVE.append(tracker)
    failed = True
    try:
        yield tracker
        failed = False
    finally:
        _ACTIVE.remove(tracker)
        tracker.finish(failed=failed)


def build_tracker(logger_cfg: Any) -> Tracker:
    """The configured tracker (`logger._target_`), checked: a bad option is one line."""
    from numerlab.registry import build

    tracker = build(logger_cfg, "logger", Tracker)
    check = getattr(tracker, "check", None)
    if check is not None:
        check()
    return tracker
