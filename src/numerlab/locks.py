"""An exclusive lock on a file, held by one process at a time (an OS lock: released by the
OS when the holder exits or is killed, so a crash never leaves it stuck): task=submit holds
one for its whole invocation so two at once never upload twice."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from numerlab.errors import NumerlabError

POLL_S = 0.2  # how often a waiting process tries the lock again


def _try_lock(fd: int) -> bool:
    """Take the lock on open file `fd` without waiting; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


@contextlib.contextmanager
def exclusive(path: str | Path, wait_s: float, what: str,
              sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> Iterator[Path]:
    """Hold the lock on `path` (created with its dir) for the block: at once, or within
    `wait_s` seconds (0: refuse at once) while another holds it; else NumerlabError naming
    `what` holds it. The holder's pid is written into the file (for that message)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = clock() + wait_s
        while not _try_lock(fd):
            if clock() >= deadline:
                waited = f" after waiting {wait_s:g}s" if wait_s > 0 else ""
                raise NumerlabError(f"{what} is running ({_holder(path)} holds the lock "
                                    f"{path}){waited}; nothing was done")
            sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the file releases the lock
