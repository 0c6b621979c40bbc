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

from omegaconf import DictConfig

from numerlab import artifacts, live_round, runs
from numerlab.settings import boolean
from numerlab.tasks import _send

log = logging.getLogger(__name__)

SUBMISSION_RECORD = "submission.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    job_dir = Path(run_dir)
    saved = runs.finished_run(cfg, artifacts.MODEL_DIR, job_dir)
    submit, model_name, client = _send.upload_client(cfg)  # before predicting
    allow_stale = boolean("tournament.allow_stale_live", cfg.tournament.get("allow_stale_live"))
    round_number = live_round.open_round(client) if submit else None

    loaded = live_round.load_run(cfg, saved)
    live = live_round.LiveData(cfg, client if submit else None, allow_stale)
    data_dir = live.data_dir(loaded.source)
    frame = live_round.predict(loaded, data_dir)
    submission = live_round.write_live_submission(frame, data_dir, job_dir)
    log.info("%d live predictions of %s -> %s", frame.height, saved, job_dir)

    record = _send.send_file(
        job_dir, submission, SUBMISSION_RECORD,
        (lambda: client.upload_predictions(submission, model_name)) if submit else None,
        model=model_name, round=round_number, rows=frame.height, run_dir=str(saved))
    print(f"submission {submission} ({frame.height} rows): "
          + (f"uploaded for {model_name}, round {round_number}, id {record['upload_id']}"
             if submit
             else "dry run, not uploaded (tournament.submit=true uploads it)"))
    return {}
