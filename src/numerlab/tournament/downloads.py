"""Dataset files fetched into a data dir: the manifest of what was downloaded from where,
resumed transfers into `<file>.temp`, and the checks a finished file must pass."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numerlab.data.layout import (
    MANIFEST_FILE,
)
from numerlab.errors import NumerlabError, message_line
from numerlab.tournament.transport import _IncompleteBody

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".temp"
DOWNLOAD_CHUNK_BYTES = 1 << 20

# --- downloads --------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteFile:
    """What identifies the bytes behind a presigned URL: size and validators."""

    size: int | None
    etag: str | None
    last_modified: str | None

    def same_as(self, recorded: Mapping[str, Any]) -> bool:
        """Same object as a manifest record: sizes equal and, where both sides have one,
        the ETag (else Last-Modified) equal."""
        if self.size is None or recorded.get("size") != self.size:
            return False
        if self.etag and recorded.get("etag"):
            return recorded["etag"] == self.etag
        if self.last_modified and recorded.get("last_modified"):
            return recorded["last_modified"] == self.last_modified
        return True

    def record(self, source: str) -> dict[str, Any]:
        return {"source": source, "size": self.size, "etag": self.etag,
                "last_modified": self.last_modified}


def _remote_file(response: requests.Response) -> RemoteFile:
    headers = response.headers
    size = None
    if response.status_code == 206:
        total = headers.get("Content-Range", "").rpartition("/")[2]
        size = int(total) if total.isdigit() else None
    elif headers.get("Content-Length", "").isdigit():
        size = int(headers["Content-Length"])
    return RemoteFile(size=size, etag=headers.get("ETag"),
                      last_modified=headers.get("Last-Modified"))


def _body_chunks(response: requests.Response, timeout_s: float) -> Iterator[bytes]:
    """The raw body, chunk by chunk as it arrives. `read1` hands over what came before a
    connection breaks (requests' iter_content drops the unfinished chunk, up to
    DOWNLOAD_CHUNK_BYTES a break), so the next attempt resumes from the last byte
    received. A broken or stalled stream raises _IncompleteBody (transient)."""
    import urllib3

    while True:
        try:
            chunk = response.raw.read1(DOWNLOAD_CHUNK_BYTES, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise _IncompleteBody(f"no data within {timeout_s:g}s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise _IncompleteBody(f"connection broken ({message_line(exc)[:120]})") from None
        if not chunk:
            return
        yield chunk


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class Manifest:
    """`data_dir/.numerlab-downloads.json`: per local file name, the RemoteFile it was
    downloaded from ("files") and the one a half-downloaded `.temp` belongs to ("partial",
    so a resume can ask `If-Range` with the right ETag). Written atomically."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / MANIFEST_FILE
        self.files: dict[str, dict[str, Any]] = {}
        self.partial: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.files = dict(data.get("files") or {})
                self.partial = dict(data.get("partial") or {})
            except (OSError, ValueError, AttributeError):
                # Only our own bookkeeping is lost: files get checked again.
                log.warning("ignoring unreadable %s", self.path)

    def save(self) -> None:
        from numerlab.artifacts import atomic_file

        with atomic_file(self.path) as out:
            out.write(json.dumps({"files": self.files, "partial": self.partial}, indent=1))


def verify_download(path: Path, name: str) -> None:
    """NumerlabError unless the file opens as what its name says: a parquet footer (read
    by pyarrow) for .parquet, a JSON document for .json; other files are not checked."""
    suffix = Path(name).suffix
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif suffix == ".json":
            json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        kind = "parquet" if suffix == ".parquet" else "JSON"
        raise NumerlabError(f"downloaded {name} is not a readable {kind} file "
                            f"({message_line(exc)}); it was not kept, download again"
                            ) from None


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), disable=not enabled,
                  transient=False) as progress:
        yield progress
