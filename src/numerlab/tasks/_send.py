"""Sending a file to Numerai, for the tasks that send one (live: the submission, export:
the model upload): the switch and the keys checked before any work, then the upload or a dry
run, and the record of what was sent either way."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts
from numerlab.errors import NumerlabError
from numerlab.settings import boolean

DRY_RUN = "dry run"  # the upload id (and outcome) of a file that is not sent
SENT, FAILED, UNKNOWN = "sent", "failed", "unknown"  # outcomes of what was sent


def upload_client(cfg: DictConfig) -> tuple[bool, str | None, Any]:
    """(submit?, tournament.model_name, client or None): with `tournament.submit=true` the
    keys and the model are checked now, before any work is done."""
    from numerlab.tournament import TournamentClient

    submit = boolean("tournament.submit", cfg.tournament.get("submit"))
    model_name = cfg.tournament.get("model_name")
    if not submit:
        return False, model_name, None
    client = TournamentClient.from_config(cfg.tournament)
    client.model_id(model_name)
    return True, model_name, client


def send_file(job_dir: Path, path: Path, record_file: str, upload: Any | None,
              **fields: Any) -> dict[str, Any]:
    """`upload()` (None: a dry run, nothing sent) of the file `path` written into `job_dir`,
    then the record of it (`fields`, the upload id or "dry run", the outcome, the file's
    sha256, the time) as `record_file` in `job_dir`, written whether the upload went
    through or not (then re-raised: see `recorded`)."""
    fields = {**fields, "sha256": artifacts.sha256(path)}
    if upload is None:
        return artifacts.write_record(job_dir, record_file, {
            **fields, "upload_id": DRY_RUN, "outcome": DRY_RUN})
    with recorded(job_dir, record_file, {**fields, "upload_id": None}):
        upload_id = upload()
    return artifacts.write_record(job_dir, record_file, {
        **fields, "upload_id": upload_id, "outcome": SENT})


@contextlib.contextmanager
def recorded(job_dir: Path, record_file: str, fields: dict[str, Any]) -> Iterator[None]:
    """Around a call that sends something to Numerai: when it fails, write `fields` with
    the outcome ("unknown": its answer was lost after sending, it may have been applied;
    "failed": Numerai refused it or it never got there) and the error as `record_file`, and
    re-raise with where the record is."""
    from numerlab.tournament import OutcomeUnknown

    try:
        yield
    except NumerlabError as exc:
        outcome = UNKNOWN if isinstance(exc, OutcomeUnknown) else FAILED
        artifacts.write_record(job_dir, record_file, {
            **fields, "outcome": outcome, "error": str(exc)})
        line = f"{exc}; recorded in {Path(job_dir) / record_file} (outcome: {outcome})"
        if isinstance(exc, OutcomeUnknown):
            raise OutcomeUnknown(line, reason=exc.reason) from None
        raise NumerlabError(line) from None
