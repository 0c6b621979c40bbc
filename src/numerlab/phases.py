"""Where a run's time goes: one log line per phase (load, fit, predict, score, write).

`timed("fit")` wraps a pipeline step; every call logs `phase fit: 12.34 s`. Phases nest
(a scoring step that writes files calls a writing step): each phase counts only its own
time, its inner phases' time set aside, so the phases of a run add up to its wall time.
Inside `recording()` the seconds are also summed per phase into the dict it yields, which a
task writes into its run dir as `TIMINGS` (not metrics.json: metrics are compared across
doors, timings never are).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

TIMINGS = "timings.json"
"""A run dir's seconds per phase: {"load": 3.2, "fit": 40.1, ...}."""

_totals: ContextVar[dict[str, float] | None] = ContextVar("phase_totals", default=None)
_inner: ContextVar[list[float] | None] = ContextVar("phase_inner", default=None)

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase `name`: log its own seconds (inner phases excluded) and add
    them to the current `recording()`, if any, also when the block raises."""
    outer = _inner.get()
    inner: list[float] = [0.0]
    token = _inner.set(inner)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _inner.reset(token)
        if outer is not None:
            outer[0] += elapsed
        own = elapsed - inner[0]
        log.info("phase %s: %.2f s", name, own)
        totals = _totals.get()
        if totals is not None:
            totals[name] = totals.get(name, 0.0) + own


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is phase `name`."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


@contextmanager
def recording(totals: dict[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Sum the phases run inside the block into `totals` (a new dict if None), yielded:
    seconds per phase. Pass the same dict to several blocks to sum over all of them."""
    totals = {} if totals is None else totals
    token = _totals.set(totals)
    try:
        yield totals
    finally:
        _totals.reset(token)


def write(path: Path, totals: dict[str, float]) -> None:
    """`totals` as JSON, seconds rounded to milliseconds."""
    path.write_text(json.dumps({k: round(v, 3) for k, v in totals.items()}, indent=2) + "\n")
