"""Fits in other processes, sharing the int8 data: ensemble members (`model.n_jobs`) and CV
folds (`cv.n_jobs`).

Workers are spawned, not forked: a fork after LightGBM/XGBoost/torch (or polars) have started
their thread pools in this process can deadlock. The data reaches them through a scratch
dir: feature matrices as .npy files each worker memory-maps (copy-on-write, so the pages are
shared until a library writes), everything else pickled. A task runs as
`fn(datasets, *args)` in a worker, `datasets` the named Datasets read back there.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numerlab.data.dataset import Dataset

log = logging.getLogger(__name__)

_ARRAYS = ("features", "extra_features")


def dump_dataset(data: Dataset, path: Path) -> None:
    """`data` into dir `path`: its int8 matrices as .npy, the rest as a pickle."""
    path.mkdir(parents=True)
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)
              if f.name not in _ARRAYS}
    fields["ids"] = np.asarray(data.ids, dtype=object)  # StringDType does not pickle on 2.1
    for name in _ARRAYS:
        np.save(path / f"{name}.npy", getattr(data, name), allow_pickle=False)
    (path / "fields.pkl").write_bytes(pickle.dumps(fields))


def read_dataset(path: Path) -> Dataset:
    """A Dataset `dump_dataset` wrote, its matrices memory-mapped copy-on-write."""
    fields = pickle.loads((path / "fields.pkl").read_bytes())
    arrays = {name: _load_npy(path / f"{name}.npy") for name in _ARRAYS}
    return Dataset(**fields, **arrays)


def _load_npy(path: Path) -> np.ndarray:
    array = np.load(path, mmap_mode="c")
    return np.load(path) if array.size == 0 else array  # an empty one cannot be mapped


def affordable_jobs(data: Dataset) -> int:
    """How many fits may run at once: each worker is assumed to need up to twice the
    features it fits on (a library's own copy of them), out of MemAvailable."""
    try:
        with open("/proc/meminfo") as meminfo:
            line = next(x for x in meminfo if x.startswith("MemAvailable:"))
        available = int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return 1 << 30  # unknown: trust the configured n_jobs
    return max(1, int(available // max(1, 2 * data.features.nbytes)))


def _run_task(fn: Callable[..., Any], data_dir: Path, names: Sequence[str],
              args: tuple) -> Any:
    """In a spawned worker: the datasets read back, then `fn(datasets, *args)`."""
    datasets = {name: read_dataset(data_dir / name) for name in names}
    return fn(datasets, *args)


def map_spawned(fn: Callable[..., Any], tasks: Sequence[tuple], datasets:
                Mapping[str, Dataset | None], jobs: int, scratch_in: Path) -> list[Any]:
    """`[fn(datasets, *args) for args in tasks]`, run in `jobs` spawned processes; `fn` is a
    module-level function. The datasets (None ones left out) are written once into a scratch
    dir under `scratch_in`, removed afterwards. Results come back in task order; the first
    failure (in task order) is raised and the tasks not started are cancelled."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    Path(scratch_in).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".parallel-", dir=scratch_in))
    try:
        names = [name for name, data in datasets.items() if data is not None]
        for name in names:
            dump_dataset(datasets[name], scratch / name)
        log.info("%d fits in %d processes", len(tasks), jobs)
        with ProcessPoolExecutor(max_workers=jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_task, fn, scratch, names, tuple(args))
                       for args in tasks]
            try:
                return [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
