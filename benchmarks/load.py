"""Loading a feature set: numerlab's `load_split` versus `pandas.read_parquet(columns=...)`
(and versus pandas followed by `.to_numpy()`, which yields the same row-major int8 matrix).

Writes a v5-shaped train.parquet (id, era, int8 features, target) and a features.json into a
temporary dir, then loads the "medium" set (plus id, era, target) with each method in fresh
child processes, alternating, and prints median wall time and peak memory:

    speed   = pandas seconds / numerlab seconds            (> 1: numerlab is faster)
    memory  = peak RSS growth / int8 matrix size           (numerlab goal <= 1.5)

Peak RSS growth is measured the same way for both methods, each in a fresh child: the child
imports everything either method uses (pandas and the pyarrow modules `read_parquet` loads on
first use, numerlab), then reads VmRSS and resets VmHWM (/proc/self/clear_refs), loads, and
reports VmHWM minus that VmRSS. It counts Arrow's and NumPy's allocations, which tracemalloc
does not see, and code pages touched for the first time. Linux only.

    python benchmarks/load.py [--rows 500000] [--features 780] [--medium-share 0.33]
                              [--repeats 3] [--dir DIR (keep/reuse the data)]

`--medium-fraction` is another name for `--medium-share`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_dataset(out: Path, rows: int, n_features: int, rows_per_era: int,
                  medium_share: float, row_group_size: int | None, seed: int = 0) -> list[str]:
    """train.parquet + features.json in `out`; returns the medium feature names."""
    rng = np.random.default_rng(seed)
    names = [f"feature_{j:04d}" for j in range(n_features)]
    eras = np.arange(rows) // rows_per_era + 1
    columns: dict[str, pa.Array] = {
        "id": pa.array([f"n{v:015x}" for v in rng.permutation(rows) * 7919 + 12345]),
        "era": pa.array(np.char.zfill(eras.astype(str), 4)),
    }
    # Every feature is a shuffled copy of one bin column with Numerai's equal 20% bins:
    # realistic value distribution and compression, cheap to write.
    base = (np.arange(rows) % 5).astype(np.int8)
    for name in names:
        columns[name] = pa.array(rng.permutation(base))
    columns["target"] = pa.array(rng.choice(np.array([0, .25, .5, .75, 1], np.float32),
                                            size=rows, p=[.05, .2, .5, .2, .05]))
    pq.write_table(pa.table(columns), out / "train.parquet", row_group_size=row_group_size)
    step = max(1, round(1 / medium_share))
    medium = names[::step]
    meta = {"feature_sets": {"medium": medium, "all": names}, "targets": ["target"]}
    (out / "features.json").write_text(json.dumps(meta))
    return medium


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(method: str, data_dir: Path) -> None:
    """Load once with `method`; print JSON {seconds, peak_bytes, fingerprint, ...}."""
    import pandas as pd

    # What pd.read_parquet imports on first use, so that neither method pays for it.
    import pandas.io.parquet
    import pyarrow.dataset
    import pyarrow.pandas_compat  # noqa: F401

    from numerlab.data import load_split, read_features_json

    medium = read_features_json(data_dir)["feature_sets"]["medium"]
    path = data_dir / "train.parquet"
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    if method == "numerlab":
        data = load_split(path, medium, "target")
    elif method == "pandas":
        frame = pd.read_parquet(path, columns=["id", "era", "target", *medium])
    else:  # pandas+matrix: what a model needs from pandas, the same row-major int8 matrix
        frame = pd.read_parquet(path, columns=["id", "era", "target", *medium])
        features = np.ascontiguousarray(frame[medium].to_numpy(dtype=np.int8))
        frame = frame.drop(columns=medium)
    seconds = time.perf_counter() - start
    peak = (_status_kb("VmHWM") - before) * 1024
    dataset_bytes = ids_bytes = 0
    if method == "numerlab":
        matrix = data.features
        ids_bytes = _string_array_bytes(data.ids)
        dataset_bytes = (data.features.nbytes + ids_bytes + data.eras.nbytes
                         + data.target.nbytes + data.aux.nbytes)
    elif method == "pandas":
        matrix = frame[medium[:50]].to_numpy()  # for the fingerprint only
    else:
        matrix = features
    fingerprint = int(matrix[::977, :50].astype(np.int64).sum())
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "fingerprint": fingerprint,
                      "dataset_bytes": dataset_bytes, "ids_bytes": ids_bytes}))


def _string_array_bytes(ids: np.ndarray) -> int:
    """Approximate memory of a StringDType array (object arrays: pointers plus str objects).

    StringDType keeps 16 bytes per element, which hold strings of up to 15 bytes; longer ones
    go to the array's arena with a size prefix (1 byte up to 255 bytes)."""
    if ids.dtype == object:
        return ids.nbytes + sum(-(-sys.getsizeof(i) // 8) * 8 for i in ids)
    lengths = np.strings.str_len(np.strings.encode(ids, "utf-8"))
    long = lengths[lengths > 15]
    return ids.nbytes + int(long.sum()) + len(long) * 1


def run_child(method: str, data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, "--dir", str(data_dir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _matches(data_dir: Path, args: argparse.Namespace) -> bool:
    """True if `data_dir` already holds the data these arguments would write."""
    try:
        meta = pq.ParquetFile(data_dir / "train.parquet").metadata
        sets = json.loads((data_dir / "features.json").read_text())["feature_sets"]
    except (OSError, ValueError, KeyError):
        return False
    step = max(1, round(1 / args.medium_share))
    return (meta.num_rows == args.rows and meta.num_columns == args.features + 3
            and len(sets["medium"]) == len(range(0, args.features, step))
            and (args.row_group_size is None
                 or meta.row_group(0).num_rows == min(args.rows, args.row_group_size)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--features", type=int, default=780)
    parser.add_argument("--medium-share", "--medium-fraction", type=float, default=1 / 3,
                        help="share of the features in the medium set (v5: 705/2376)")
    parser.add_argument("--rows-per-era", type=int, default=5_000)
    parser.add_argument("--row-group-size", type=int, default=None,
                        help="rows per parquet row group (default: pyarrow's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="reuse/keep data in this dir")
    parser.add_argument("--child", choices=["numerlab", "pandas", "pandas+matrix"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dir)
        return

    with tempfile.TemporaryDirectory(prefix="numerlab-bench-") as tmp:
        data_dir = args.dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        path = data_dir / "train.parquet"
        if args.dir is not None and _matches(data_dir, args):
            medium = json.loads((data_dir / "features.json").read_text())["feature_sets"][
                "medium"]
        else:
            medium = write_dataset(data_dir, args.rows, args.features, args.rows_per_era,
                                   args.medium_share, args.row_group_size)
        n_groups = pq.ParquetFile(path).num_row_groups
        print(f"wrote {path.stat().st_size / 2**20:.0f} MiB: {args.rows:,} rows x "
              f"{args.features} int8 features in {n_groups} row group(s) "
              f"({time.perf_counter() - start:.1f}s); medium set: {len(medium)} features")
        path.read_bytes()  # warm the page cache so neither method pays for the disk

        results: dict[str, list[dict]] = {"numerlab": [], "pandas": [], "pandas+matrix": []}
        for _ in range(args.repeats):
            for method, runs in results.items():
                runs.append(run_child(method, data_dir))
        prints = {r["fingerprint"] for rs in results.values() for r in rs}
        assert len(prints) == 1, f"methods loaded different values: {prints}"

    matrix_bytes = args.rows * len(medium)
    seconds = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
    peak = {m: statistics.median(r["peak_bytes"] for r in rs) for m, rs in results.items()}
    print(f"int8 matrix: {matrix_bytes / 2**20:.0f} MiB ({args.rows:,} x {len(medium)})")
    print("peak = VmHWM - VmRSS of a fresh child, both taken after its imports (pandas, "
          "pyarrow, numerlab) and before the load; same for both methods")
    for method, runs_of in results.items():
        times = " ".join(f"{r['seconds']:.2f}s" for r in runs_of)
        peaks = " ".join(f"{r['peak_bytes'] / matrix_bytes:.2f}x" for r in runs_of)
        print(f"{method:>13}: {seconds[method]:6.2f}s  peak RSS growth "
              f"{peak[method] / 2**20:6.0f} MiB = {peak[method] / matrix_bytes:.2f}x matrix  "
              f"(medians of {args.repeats} runs: {times}; {peaks})")
    print(f"speed ratio (pandas / numerlab): {seconds['pandas'] / seconds['numerlab']:.2f}x; "
          f"to the same row-major int8 matrix (pandas+matrix / numerlab): "
          f"{seconds['pandas+matrix'] / seconds['numerlab']:.2f}x")
    print(f"numerlab peak memory / int8 matrix: {peak['numerlab'] / matrix_bytes:.2f}x "
          f"(goal <= 1.5x); pandas: {peak['pandas'] / matrix_bytes:.2f}x; pandas+matrix: "
          f"{peak['pandas+matrix'] / matrix_bytes:.2f}x")
    first = results["numerlab"][0]
    print(f"  numerlab Dataset itself (matrix + ids as StringDType, "
          f"~{first['ids_bytes'] / args.rows:.0f} B/row + eras + target): "
          f"{first['dataset_bytes'] / matrix_bytes:.2f}x; transient and fixed overhead beyond "
          f"it: {(peak['numerlab'] - first['dataset_bytes']) / matrix_bytes:.2f}x")


if __name__ == "__main__":
    main()
