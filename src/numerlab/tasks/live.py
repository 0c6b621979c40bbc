"""task=live: predict the current round's live data with a finished run's model.

    python run.py task=live run_dir=outputs/... tournament.model_name=my_model
    python run.py task=live run_dir=outputs/... tournament.model_name=my_model \
        tournament.submit=true

Loads `<run_dir>/model/` and the run's own config (`.hydra/config.yaml`: data, target and
post-processing; the current config where the run has none, e.g. DVC's artifacts/); brings
live.parquet up to date when the data source downloads; predicts it, post-processes as the
run did, ranks into (0, 1); writes `submission.csv` and `predictions/live.parquet` into
the job dir and validates the submission against the ids of live.parquet as Numerai does.
Only with `tournament.submit=true` is it uploaded, for `tournament.model_name` (checked
against the account, and the round must be open, before anything is predicted).
`submission.json` records what was sent: model, round, upload id (or "dry run"), the
file's sha256 and the time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from numerlab import artifacts, data, pipeline, registry, runs
from numerlab.data.layout import LIVE_FILE
from numerlab.data.source import build_source
from numerlab.errors import NumerlabError
from numerlab.models.base import load_model
from numerlab.postprocess import PostProcess
from numerlab.submission import validate_submission, write_submission
from numerlab.tasks import _send

log = logging.getLogger(__name__)

SUBMISSION_RECORD = "submission.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    job_dir = Path(run_dir)
    saved = runs.finished_run(cfg, artifacts.MODEL_DIR, job_dir)
    run_cfg = runs.saved_config(cfg, saved)
    postprocess = registry.build(run_cfg.postprocess, "postprocess", PostProcess)
    source = build_source(run_cfg.data)

    submit, model_name, client = _send.upload_client(cfg)  # before predicting
    round_number = open_round(client) if submit else None

    model, feature_names = load_model(saved / artifacts.MODEL_DIR)
    data_dir = source.prepare(fetch=pipeline.data_fetcher(cfg), fresh=(LIVE_FILE,))
    live = data.load_splits(source, {"columns": feature_names}, run_cfg.target,
                            splits=("live",),
                            extra_features=pipeline.postprocess_columns(run_cfg)).live
    frame = pipeline.predict_live(postprocess, model, live)
    with artifacts.staged(job_dir) as stage:
        write_checked_submission(frame, live_ids(data_dir / LIVE_FILE), stage)
    log.info("%d live predictions of %s -> %s", frame.height, saved, job_dir)

    submission = job_dir / artifacts.SUBMISSION
    record = _send.send_file(
        job_dir, submission, SUBMISSION_RECORD,
        (lambda: client.upload_predictions(submission, model_name)) if submit else None,
        model=model_name, round=round_number, rows=frame.height, run_dir=str(saved))
    print(f"submission {submission} ({frame.height} rows): "
          + (f"uploaded for {model_name}, round {round_number}, id {record['upload_id']}"
             if submit
             else "dry run, not uploaded (tournament.submit=true uploads it)"))
    return {}


def open_round(client: Any) -> int | None:
    """The current round's number; NumerlabError when it is closed."""
    status = client.round_status()
    status.require_open("nothing is submitted")
    return status.number


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
