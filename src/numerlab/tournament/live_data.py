"""Is a local live.parquet the current round's? Asked before a submission: the file is
compared with the object Numerai's `dataset` query serves for the current round, looked at
with a one-byte ranged GET (a presigned URL is signed for GET, so no HEAD): size and ETag
only, nothing is downloaded into the data dir.

- A file numerlab downloaded (the data dir's manifest records its source, size and ETag):
  current when Numerai still serves the object it was downloaded from.
- A file of your own: current when its MD5 is the object's ETag (a single-part upload's ETag
  is the MD5 of its bytes); where the ETag is a multipart one (`<md5>-<parts>`), only the
  sizes can be compared.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numerlab.tournament.downloads import RemoteFile, _remote_file
from numerlab.tournament.transport import NumeraiApiError, _ServerError, _where

if TYPE_CHECKING:
    from numerlab.tournament.client import TournamentClient

HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class LiveCheck:
    """The verdict on a local live file: `current`, and `why` in words."""

    current: bool
    why: str


def remote_file(client: TournamentClient, name: str) -> RemoteFile:
    """Size and validators of dataset `name` as Numerai serves it now (one byte asked)."""
    url = client.dataset_url(name)

    def look() -> RemoteFile:
        response = client.transport.send_once(
            "GET", url, headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"},
            stream=True)
        with response:  # closed before any body is read
            if response.status_code >= 500:
                raise _ServerError(response.status_code, _where(url))
            if response.status_code not in (200, 206):
                raise NumeraiApiError(f"looking at {name} refused: HTTP "
                                      f"{response.status_code} from {_where(url)}")
            return _remote_file(response)

    return client.transport.call(look, f"look at Numerai's {name}")


def check_live_file(client: TournamentClient, path: Path, name: str,
                    record: Mapping[str, Any] | None) -> LiveCheck:
    """Whether `path` holds the bytes of dataset `name` (e.g. "v5.3/live.parquet") as
    Numerai serves them for the current round; `record` is the download manifest's entry
    for the file (None for a file numerlab did not download)."""
    remote = remote_file(client, name)
    size = path.stat().st_size
    if record is not None and record.get("source") == name and record.get("size") == size:
        if remote.same_as(record):
            return LiveCheck(True, f"downloaded from {name}, which Numerai still serves")
        return LiveCheck(False, f"it was downloaded from an earlier {name} (ETag "
                                f"{record.get('etag')}); Numerai now serves ETag {remote.etag}")
    md5 = _single_part_md5(remote.etag)
    if md5 is not None:
        ours = _md5(path)
        if ours == md5:
            return LiveCheck(True, f"its MD5 is the ETag of Numerai's {name}")
        return LiveCheck(False, f"its MD5 {ours} is not the ETag {md5} of Numerai's current "
                                f"{name}")
    if remote.size is not None and remote.size != size:
        return LiveCheck(False, f"{size} bytes, Numerai's current {name} has {remote.size}")
    return LiveCheck(True, f"same size as Numerai's {name} (its ETag {remote.etag} allows no "
                           f"finer comparison)")


def _single_part_md5(etag: str | None) -> str | None:
    value = (etag or "").strip().removeprefix("W/").strip('"').lower()
    return value if re.fullmatch(r"[0-9a-f]{32}", value) else None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
