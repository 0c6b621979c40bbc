"""Writing a run's artifacts so that a failed run never looks complete.

Everything is written into a hidden staging directory next to its final place and moved in
only when the whole set is there; `metrics.json` moves last, so its presence means done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

METRICS = "metrics.json"
PER_ERA = "per_era.parquet"
VALIDATION_PREDICTIONS = "predictions/validation.parquet"
LIVE_PREDICTIONS = "predictions/live.parquet"
SUBMISSION = "submission.csv"
MODEL_DIR = "model"
PLOTS_DIR = "plots"
MULTIRUN_FILE = "multirun.yaml"  # a sweep dir's composed config (Hydra; numerlab for Optuna)
ERROR_FILE = "error.txt"  # a failed sweep job's one-line error, in its dir (sweep summaries)

STAGING_PREFIX = ".staging-"
# `.staging-<pid>@<host>-<random>`; `.staging-<random>` from numerlab before the pid was in it
STAGING_NAME = re.compile(r"\.staging-(?:(?P<pid>\d+)@(?P<host>.+)-)?[a-z0-9_]{8}")
STALE_STAGING_S = 24 * 3600  # a staging dir this old is stale whoever wrote it


@contextmanager
def staged(run_dir: Path) -> Iterator[Path]:
    """Yield a staging dir; on success move its contents into `run_dir` (metrics.json last),
    on any error delete it so no partial artifact is left behind."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(run_dir)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}@{_host()}-",
                                  dir=run_dir))
    try:
        yield stage
        entries = sorted(stage.iterdir(), key=lambda p: p.name == METRICS)
        for entry in entries:
            target = run_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def remove_stale_staging(run_dir: Path, now: float | None = None) -> list[Path]:
    """Delete the staging dirs a killed run left in `run_dir` (what `staged` writes into
    before the moves: never a finished artifact) and return them. Only dirs named as
    `staged` names them, and only stale ones: written by a process of this host that is no
    longer running, or untouched for STALE_STAGING_S (another host's, or one from before
    the pid was in the name). A running job's staging dir is left alone."""
    now = time.time() if now is None else now
    removed = []
    for entry in Path(run_dir).glob(f"{STAGING_PREFIX}*"):
        match = STAGING_NAME.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        dead = match["pid"] is not None and match["host"] == _host() and not _running(
            int(match["pid"]))
        if dead or age > STALE_STAGING_S:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: _json_safe(v) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """An open temporary sibling of `path` (mode "w" text, "wb" bytes) that replaces `path`
    once the block completes, synced to disk: a reader never sees half a file, and a
    failure leaves an existing `path` as it was and no temporary behind. The one way
    numerlab writes a single file in place (submissions, the download manifest, model
    exports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    """The file's SHA-256, hex (read 1 MiB at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_record(run_dir: Path, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with the time (UTC, ISO 8601) as JSON file `name` in `run_dir`, staged like
    every artifact: what a tournament task did (submission.json, export.json, stake.json)."""
    record = {**record, "time": datetime.now(UTC).isoformat()}
    with staged(Path(run_dir)) as stage:
        write_metrics(stage / name, record)
    return record
