"""The steps of predicting a round's live data with finished runs, shared by task=live (one run)
and task=submit (every configured model): a finished run's model and config (`load_run`), its
data dir made ready once per invocation with live.parquet brought up to date and, before an
upload, checked to be the current round's (`LiveData`), the predictions of one run from it
(`predict`), and the checked submission written beside them (`write_checked_submission`).

Each run reads its own feature set (and post-processing columns) from the shared live file;
runs of different data dirs get one refresh each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from numerlab import artifacts, data, pipeline, registry, runs
from numerlab.data.layout import LIVE_FILE
from numerlab.data.source import DataSource, build_source
from numerlab.errors import NumerlabError
from numerlab.postprocess import PostProcess
from numerlab.submission import validate_submission, write_submission

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedRun:
    """A finished run ready to predict: its dir, the config it ran with (data, target and
    post-processing), the model and the features it was fitted on."""

    run_dir: Path
    cfg: DictConfig
    model: Any
    feature_names: list[str]
    postprocess: PostProcess
    source: DataSource

    @property
    def config_hash(self) -> str | None:
        """sha256 of the run's saved config file (None for a run without one)."""
        path = self.run_dir / runs.SAVED_CONFIG
        return artifacts.sha256(path) if path.is_file() else None


def load_run(cfg: DictConfig, run_dir: Path) -> LoadedRun:
    """The finished run at `run_dir` (checked by `runs.finished_run`'s rules): its config
    (the current `cfg`'s where it saved none), post-processing, data source and model."""
    from numerlab.models.base import load_model

    run_cfg = runs.saved_config(cfg, run_dir)
    postprocess = registry.build(run_cfg.postprocess, "postprocess", PostProcess)
    source = build_source(run_cfg.data)
    model, feature_names = load_model(run_dir / artifacts.MODEL_DIR)
    return LoadedRun(run_dir, run_cfg, model, list(feature_names), postprocess, source)


@dataclass
class LiveData:
    """The live data of this invocation: each data dir made ready (live.parquet fetched
    fresh where the source downloads) once, and, when `client` is given (an upload follows),
    checked to be the current round's (`allow_stale` submits another with a warning)."""

    cfg: DictConfig
    client: Any = None
    allow_stale: bool = False
    _ready: dict[Path, Path | NumerlabError] = field(default_factory=dict)

    def data_dir(self, source: DataSource) -> Path:
        """The data dir of `source`, ready (a failure is raised again for each run of the
        same dir, not tried again)."""
        key = source.dir.expanduser().resolve()
        if key not in self._ready:
            try:
                data_dir = source.prepare(fetch=pipeline.data_fetcher(self.cfg),
                                          fresh=(LIVE_FILE,))
                if self.client is not None:
                    check_live_is_current(self.client, source, data_dir / LIVE_FILE,
                                          self.allow_stale)
            except NumerlabError as exc:
                data_dir = exc
            self._ready[key] = data_dir
        ready = self._ready[key]
        if isinstance(ready, NumerlabError):
            raise NumerlabError(str(ready))
        return ready


def predict(run: LoadedRun, data_dir: Path) -> pl.DataFrame:
    """`id era prediction` of the live rows in `data_dir` by `run`: its own features (and
    post-processing columns) loaded, predicted, post-processed and ranked into (0, 1)."""
    live = data.load_splits(run.source, {"columns": run.feature_names}, run.cfg.target,
                            splits=("live",),
                            extra_features=pipeline.postprocess_columns(run.cfg)).live
    return pipeline.predict_live(run.postprocess, run.model, live)


def write_live_submission(frame: pl.DataFrame, data_dir: Path, out_dir: Path) -> Path:
    """`predictions/live.parquet` and the checked `submission.csv` of `frame` into
    `out_dir` (staged: nothing is left there when the checks fail); the CSV's path."""
    with artifacts.staged(out_dir) as stage:
        write_checked_submission(frame, live_ids(data_dir / LIVE_FILE), stage)
    return Path(out_dir) / artifacts.SUBMISSION


def open_round(client: Any) -> int | None:
    """The current round's number; NumerlabError when it is closed."""
    status = client.round_status()
    status.require_open("nothing is submitted")
    return status.number


def check_live_is_current(client: Any, source: Any, path: Path, allow_stale: bool) -> None:
    """NumerlabError unless `path` is the current round's live.parquet as Numerai serves it
    (a source other than Numerai's v5 files never is), or `allow_stale` says to submit it
    anyway (then a warning)."""
    from numerlab.data.source import V5Source
    from numerlab.tournament.live_data import LiveCheck, check_live_file

    if isinstance(source, V5Source):
        version = source.version or source.held_version() or client.latest_version()
        record = (source.download_records() or {}).get(LIVE_FILE)
        verdict = check_live_file(client, path, f"{version}/{LIVE_FILE}", record)
    else:
        verdict = LiveCheck(False, f"it is not Numerai's data ({type(source).__name__}; "
                                   f"data=v5 reads Numerai's)")
    if verdict.current:
        log.info("%s is the current round's live data: %s", path, verdict.why)
        return
    stale = f"{path} is not the current round's live data ({verdict.why})"
    if allow_stale:
        log.warning("%s; submitting it anyway (tournament.allow_stale_live=true)", stale)
        return
    raise NumerlabError(f"not submitting: {stale}; run task=download to fetch the current "
                        f"one, or set tournament.allow_stale_live=true to submit this file")


def live_ids(path: Path) -> np.ndarray:
    """The `id` column of a live.parquet, read from the file itself."""
    import pyarrow.parquet as pq

    try:
        return np.asarray(pq.read_table(path, columns=["id"]).column("id").to_pylist(),
                          dtype=str)
    except (OSError, KeyError, ValueError) as exc:
        raise NumerlabError(f"cannot read the ids of {path}: {exc}") from None


def write_checked_submission(frame: pl.DataFrame, ids_of_live_file: np.ndarray,
                             out_dir: Path) -> Path:
    """Write `predictions/live.parquet` and `submission.csv` (`id,prediction`) of `frame`
    into `out_dir` and validate the CSV as Numerai does against the live file's ids
    (every id once, no other, no NaN, values in [0, 1], not constant)."""
    (out_dir / artifacts.LIVE_PREDICTIONS).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out_dir / artifacts.LIVE_PREDICTIONS)
    path = write_submission(frame["id"], frame["prediction"], out_dir / artifacts.SUBMISSION)
    try:
        validate_submission(path, ids_of_live_file)
    except NumerlabError as exc:  # the staged path means nothing to the user: drop it
        raise NumerlabError(f"the live predictions fail Numerai's submission checks, "
                            f"nothing written: {str(exc).replace(f'{path}: ', '')}") from None
    return path
