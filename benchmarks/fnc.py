"""FNC as a run pays it: one call in a fresh process, numerlab versus numerai-tools.

    python benchmarks/fnc.py [--rows 200000] [--eras 40] [--features 300] [--seed 0]
        [--repeat 3] [--blas-threads N]

Builds Numerai-like eras (`neutralize.numerai_like`: int8 features 0..4 with factor
structure, a few filled with 2 in early eras, a prediction and a 5-bin target), writes them
to a temporary parquet file, then --repeat times, back to back, starts a fresh interpreter
for each side that reads the file and times ONE call after its imports:

- numerlab: `per_era_scores(frame, features=<the int8 matrix>)` (CORR + FNC, as a run
  scores, its features held as `Dataset.features` holds them);
- numerai-tools: `feature_neutral_corr` applied era by era through pandas groupby-apply.

Prints each pair's seconds and ratio, the min and median ratio, and the largest absolute
difference between the two sides' per-era FNC (must be <= 1e-9). BLAS threads are left to
the libraries, as a run leaves them, unless --blas-threads sets OPENBLAS_NUM_THREADS (and
OMP_/MKL_) for both children: on a machine other jobs load, numerai-tools' multi-threaded
OpenBLAS calls swing 10-40x from run to run, and --blas-threads 1 is the steadier
comparison (numerlab still solves eras on its own threads, `scoring._solver_threads`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, time, warnings
import numpy as np
side, path = sys.argv[1], sys.argv[2]
if side == "numerlab":
    import polars as pl
    from numerlab.scoring import per_era_scores
    frame = pl.read_parquet(path)
    names = [c for c in frame.columns if c.startswith("feature_")]
    # as a run holds them (Dataset.features): one C-ordered int8 matrix
    matrix = np.ascontiguousarray(frame.select(names).to_numpy())
    frame = frame.select("era", "prediction", "target")
    start, cpu = time.perf_counter(), time.process_time()
    fnc = per_era_scores(frame, features=matrix)["fnc"].to_numpy()
else:
    import pandas as pd
    from numerai_tools.scoring import feature_neutral_corr
    frame = pd.read_parquet(path)
    names = [c for c in frame.columns if c.startswith("feature_")]
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fnc = frame.groupby("era").apply(lambda g: feature_neutral_corr(
            g[["prediction"]], g[names], g["target"]).iloc[0]).sort_index().to_numpy()
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "fnc": [float(v) for v in fnc]}))
"""


def one_call(side: str, path: Path, blas_threads: int | None
             ) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds, per-era FNC) of one call in a fresh interpreter."""
    env = dict(os.environ)
    if blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(blas_threads)
    out = subprocess.run([sys.executable, "-c", CHILD, side, str(path)], check=True,
                         capture_output=True, text=True, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["cpu"], np.asarray(result["fnc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--eras", type=int, default=40)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads of both children (default: the libraries' choice)")
    args = parser.parse_args()

    from neutralize import numerai_like

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        numerai_like(args.rows, args.eras, args.features, args.seed).to_parquet(path)
        print(f"FNC, one call in a fresh process: {args.rows:,} rows x {args.features} int8 "
              f"features, {args.eras} eras, BLAS threads: {args.blas_threads or 'default'}")
        ratios, diff = [], 0.0
        for i in range(args.repeat):
            started = time.perf_counter()
            ours_s, ours_cpu, ours = one_call("numerlab", path, args.blas_threads)
            base_s, base_cpu, base = one_call("numerai-tools", path, args.blas_threads)
            diff = max(diff, float(np.max(np.abs(ours - base))))
            ratios.append(base_s / ours_s)
            print(f"  run {i + 1}: numerlab {ours_s:6.3f} s ({ours_cpu:5.2f} s CPU)   "
                  f"numerai-tools {base_s:6.3f} s ({base_cpu:5.2f} s CPU)   "
                  f"speed-up {ratios[-1]:5.2f}x   ({time.perf_counter() - started:.0f} s)")
    print(f"speed-up min {min(ratios):.2f}x  median {statistics.median(ratios):.2f}x   "
          f"max |diff| {diff:.1e}")
    if not diff <= 1e-9:
        raise SystemExit("FNC differs from numerai-tools by more than 1e-9")


if __name__ == "__main__":
    main()
