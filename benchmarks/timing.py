"""Timing shared by the benchmark scripts (`python benchmarks/<name>.py` puts this folder on
sys.path, so each script imports it as `timing`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_times(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(best wall seconds, best CPU seconds, the last result) over `repeat` calls. CPU time
    (all threads of this process) is the steadier figure on a machine shared with other
    jobs."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(best wall seconds over `repeat` calls, the last result)."""
    wall, _, result = best_times(fn, repeat)
    return wall, result
