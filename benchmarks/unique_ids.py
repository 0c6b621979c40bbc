"""What the repeated-id check costs a load: `load_split` of a v5-shaped file with the check
(`v5.require_unique_ids` over per-batch 64-bit hashes of the ids) versus the same load with
the check switched off, alternating in this process, median wall time:

    overhead = seconds with the check / seconds without it   (1.0: free)
    share    = seconds of the check alone / seconds of a load without it

    python benchmarks/unique_ids.py [--rows 1000000] [--features 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from numerlab.data import v5


def write_file(path: Path, rows: int, n_features: int, rows_per_era: int = 5000) -> list[str]:
    rng = np.random.default_rng(0)
    names = [f"feature_{j}" for j in range(n_features)]
    columns = {"id": pa.array([f"n{i:015x}" for i in rng.permutation(rows)]),
               "era": pa.array([f"{1 + i // rows_per_era:04d}" for i in range(rows)]),
               **{n: pa.array(rng.integers(0, 5, rows, dtype=np.int8)) for n in names},
               "target": pa.array(rng.integers(0, 5, rows).astype(np.float32) / 4)}
    pq.write_table(pa.table(columns), path, row_group_size=100_000)
    return names


def timed_load(path: Path, names: list[str]) -> float:
    start = time.perf_counter()
    v5.load_split(path, names, "target")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    checked = v5.require_unique_ids, v5._hashes
    unchecked = (lambda ids, hashes, path: None,
                 lambda column, rows: np.zeros(len(column) if rows is None else len(rows),
                                               dtype=np.uint64))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.parquet"
        names = write_file(path, args.rows, args.features)
        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(args.repeats):
            for label, (check, hashes) in (("without", unchecked), ("with", checked)):
                v5.require_unique_ids, v5._hashes = check, hashes
                times[label].append(timed_load(path, names))
        v5.require_unique_ids, v5._hashes = checked
        check_s = statistics.median(timed_check(path) for _ in range(args.repeats))
    with_s, without_s = (statistics.median(times[k]) for k in ("with", "without"))
    print(f"{args.rows} rows x {args.features} int8 features: load {without_s:.2f}s without "
          f"the id check, {with_s:.2f}s with it; overhead = {with_s / without_s:.3f}x; "
          f"the check alone {check_s:.3f}s = {check_s / without_s:.3f} of a load")


def timed_check(path: Path) -> float:
    """The check by itself: every batch's ids hashed, then `require_unique_ids`."""
    ids = pq.read_table(path, columns=["id"]).column("id")
    strings = np.asarray(ids.to_pylist(), dtype=np.dtypes.StringDType())
    start = time.perf_counter()
    batches = pa.table([ids], names=["id"]).to_batches(v5.SMALL_BATCH_ROWS)
    hashes = np.concatenate([v5._hashes(batch.column(0), None) for batch in batches])
    v5.require_unique_ids(strings, hashes, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
