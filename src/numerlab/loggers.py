"""The Lightning loggers users expect beside W&B, as trackers (`logger=csv|tensorboard|mlflow`,
conf/logger/). Each writes the same things: the resolved config minus secrets as
hyperparameters, training curves (a neural model's per-epoch metrics through Lightning, a
GBDT's per-iteration holdout metric) and, when the run ends, every numeric metrics.json key.

- csv: Lightning's CSVLogger, `<run dir>/csv_logs/metrics.csv` and `hparams.yaml`;
- tensorboard: TensorBoardLogger, event files in `<run dir>/tensorboard/`
  (`tensorboard --logdir <run dir>/tensorboard`; needs the `tensorboard` package);
- mlflow: MLFlowLogger, one MLflow run per job in a local file store `<run dir>/mlruns`
  unless `tracking_uri` names another (`pip install -e '.[mlflow]'`); the run's id is in
  `<run dir>/mlflow.json`.

With `dir` set, every run logs under that one dir, in a subdir named by its run dir (a
sweep's job: `<sweep dir name>/<job dir name>`), so one TensorBoard or CSV root holds them all.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab.errors import NumerlabError
from numerlab.settings import text
from numerlab.tracking import Tracker, job_identity, scrub

MLFLOW_INFO = "mlflow.json"   # the run's MLflow id, tracking URI and experiment, in the run dir


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite metrics.json values (what every logger writes when a run ends)."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value)}


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without secrets (`tracking.scrub`) and without the logger's own
    settings."""
    config = scrub(OmegaConf.to_container(cfg, resolve=True))
    config.pop("logger", None)
    return config


def _needs(module: str, option: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise NumerlabError(f"logger={option} needs the {module} package: {install}")


class LightningTracker(Tracker):
    """A tracker that is one Lightning logger: the neural fit logs its curves to it, the
    GBDT iterations and the run's metrics go through the same logger."""

    option = ""          # the conf/logger/ option's name
    default_subdir = ""  # under the run dir, when `dir` is null

    def __init__(self, dir: str | None = None) -> None:
        self.dir = None if dir is None else text("logger.dir", dir, what="a directory")
        self.logger: Any = None

    def check(self) -> None:
        """The packages the logger needs are installed (one line, before any work)."""

    def save_dir(self, run_dir: Path) -> tuple[Path, str]:
        """(dir the logger writes under, the job's name there)."""
        if self.dir is None:
            return Path(run_dir) / self.default_subdir, ""
        identity = job_identity(Path(run_dir))
        # a sweep's job: <sweep>/<job dir>; a single run: <run dir>; names that are paths
        name = Path(run_dir).name
        if identity["job_num"] is not None:
            name = f"{identity['group']}/{name}"
        return Path(self.dir), name

    def build(self, save_dir: Path, name: str, run_dir: Path, job_type: str) -> Any:
        raise NotImplementedError

    def start(self, cfg: DictConfig, run_dir: Path, job_type: str) -> None:
        self.check()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_dir, name = self.save_dir(run_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        self.logger = self.build(save_dir, name, run_dir, job_type)
        self.logger.log_hyperparams(hyperparameters(cfg))

    def lightning_logger(self) -> Any | None:
        return self.logger

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.logger is None:
            return
        values = dict(values)
        iteration = values.pop("iteration", None)  # a GBDT curve's x axis
        step = step if step is not None else iteration
        self.logger.log_metrics(final_metrics(values), step=int(step or 0))

    def log_run(self, metrics: dict[str, Any], per_era: pl.DataFrame, plots: Sequence[Path],
                run_dir: Path) -> None:
        if self.logger is not None:
            self.logger.log_metrics(final_metrics(metrics), step=0)

    def finish(self, failed: bool = False) -> None:
        if self.logger is not None:
            self.logger.finalize("failed" if failed else "success")
            self.logger = None


class CSVTracker(LightningTracker):
    """logger=csv: Lightning's CSVLogger (metrics.csv, hparams.yaml)."""

    option, default_subdir = "csv", "csv_logs"

    def build(self, save_dir: Path, name: str, run_dir: Path, job_type: str) -> Any:
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(save_dir), name=name, version="")


class TensorBoardTracker(LightningTracker):
    """logger=tensorboard: Lightning's TensorBoardLogger (event files)."""

    option, default_subdir = "tensorboard", "tensorboard"

    def check(self) -> None:
        if (importlib.util.find_spec("tensorboard") is None
                and importlib.util.find_spec("tensorboardX") is None):
            raise NumerlabError("logger=tensorboard needs the tensorboard package: "
                                "pip install tensorboard")

    def build(self, save_dir: Path, name: str, run_dir: Path, job_type: str) -> Any:
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(save_dir), name=name, version="",
                                 default_hp_metric=False)


class MLflowTracker(LightningTracker):
    """logger=mlflow: one MLflow run per job, in a local file store under the run dir unless
    `tracking_uri` names another (a server, or a store a sweep's jobs share)."""

    option = "mlflow"

    def __init__(self, experiment_name: str = "numerlab", tracking_uri: str | None = None,
                 tags: dict[str, Any] | None = None) -> None:
        super().__init__(None)
        self.experiment_name = text("logger.experiment_name", experiment_name,
                                    what="an MLflow experiment name")
        self.tracking_uri = None if tracking_uri is None else text(
            "logger.tracking_uri", tracking_uri, what="an MLflow tracking URI")
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}

    def check(self) -> None:
        _needs("mlflow", self.option, "pip install -e '.[mlflow]'")

    def build(self, save_dir: Path, name: str, run_dir: Path, job_type: str) -> Any:
        from lightning.pytorch.loggers import MLFlowLogger

        uri = self.tracking_uri or (Path(run_dir) / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 refuses a file store unless opted in; it is the store that needs no
            # database and no server (a database: tracking_uri=sqlite:///mlflow.db)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        identity = job_identity(Path(run_dir))
        logger = MLFlowLogger(experiment_name=self.experiment_name, tracking_uri=uri,
                              run_name=identity["name"],
                              tags={**self.tags, "job_type": job_type,
                                    "group": str(identity["group"])})
        info = {"run_id": logger.run_id, "tracking_uri": uri,
                "experiment_name": self.experiment_name, "experiment_id": logger.experiment_id}
        (Path(run_dir) / MLFLOW_INFO).write_text(json.dumps(info, indent=1) + "\n")
        return logger

    def save_dir(self, run_dir: Path) -> tuple[Path, str]:
        return Path(run_dir), ""
