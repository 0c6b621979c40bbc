"""Sending a file to Numerai, for the tasks that send one (live: the submission, export:
the model upload): the switch and the keys checked before any work, then the upload or a dry
run, and the record of what was sent either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts
from numerlab.settings import boolean

DRY_RUN = "dry run"  # the upload id a file gets when it is not sent


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
    then the record of it (`fields`, the upload id or "dry run", the file's sha256, the
    time) as `record_file` in `job_dir`."""
    upload_id = upload() if upload is not None else DRY_RUN
    return artifacts.write_record(job_dir, record_file, {
        **fields, "upload_id": upload_id, "sha256": artifacts.sha256(path)})
