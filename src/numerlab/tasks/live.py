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
against the account, and the round must be open, before anything is predicted), and only
a live.parquet that is the current round's (compared with what Numerai serves now;
`tournament.allow_stale_live=true` submits another anyway). `submission.json` records what
was sent: model, round, upload id (or "dry run"), the outcome (sent, dry run, failed, or
unknown: the answer was lost and it may have been applied), the file's sha256 and the time.
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
from numerlab.settings import boolean
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
    allow_stale = boolean("tournament.allow_stale_live", cfg.tournament.get("allow_stale_live"))
    round_number = open_round(client) if submit else None

    model, feature_names = load_model(saved / artifacts.MODEL_DIR)
    data_dir = source.prepare(fetch=pipeline.data_fetcher(cfg), fresh=(LIVE_FILE,))
    if submit:
        check_live_is_current(client, source, data_dir / LIVE_FILE, allow_stale)
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
