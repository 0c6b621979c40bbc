"""Walk-forward CV (`task=cv`'s fold loop) against the same fits done plainly.

Builds an int8 Dataset of `--eras` eras x `--rows-per-era` rows x `--features` features
once, plans `--splits` expanding folds (embargo 13), then times, alternating, in this
process:

    numerlab  `numerlab.tasks.cv.fit_folds`: each fold's rows are views of the one matrix,
              a fresh LGBMModel per fold, test block predicted
    baseline  the same folds with the rows copied out first (numpy fancy indexing, as a
              hand-written loop would) and the same LGBMModel fit + predict

and prints

    time ratio   = numerlab seconds / baseline seconds        (goal <= 1.1 at n_jobs=1)
    memory       = peak RSS growth during numerlab's fold loop / int8 matrix size

Peak RSS growth is read from /proc/self/status (VmHWM reset through /proc/self/clear_refs),
so it counts LightGBM's native allocations; Linux only.

    python benchmarks/cv.py [--eras 300] [--rows-per-era 1000] [--features 200]
                            [--splits 5] [--repeats 3] [--rounds 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from numerlab import cv
from numerlab.data.dataset import Dataset
from numerlab.models.base import FitContext
from numerlab.models.gbdt import LGBMModel
from numerlab.tasks.cv import fit_folds


def make_rows(eras: int, rows_per_era: int, features: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = eras * rows_per_era
    labels = [f"{e:04d}" for e in range(1, eras + 1)]
    x = rng.integers(0, 5, size=(n, features), dtype=np.int8)
    signal = x[:, :10].astype(np.float32).sum(axis=1) + rng.normal(0, 8, n).astype(np.float32)
    target = np.digitize(signal, np.quantile(signal, [.05, .25, .75, .95])) / 4
    return Dataset(ids=np.array([f"id{i}" for i in range(n)], dtype=object),
                   eras=np.repeat(np.array(labels, dtype=object), rows_per_era), features=x,
                   feature_names=[f"feature_{j}" for j in range(features)],
                   target=target.astype(np.float32), target_name="target",
                   era_labels=labels,
                   era_index=np.repeat(np.arange(eras, dtype=np.int32), rows_per_era))


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return rss_kib("VmRSS")


def model_cfg(rounds: int) -> dict:
    return {"_target_": "numerlab.models.gbdt.LGBMModel", "name": "lgbm",
            "num_boost_round": rounds, "early_stopping_rounds": None,
            "params": {"objective": "regression", "learning_rate": 0.05, "max_depth": 5,
                       "num_leaves": 31, "colsample_bytree": 0.5, "max_bin": 5,
                       "num_threads": 0}}


def plain_loop(rows: Dataset, folds: list[cv.Fold], cfg, run_dir: Path) -> list[np.ndarray]:
    out = []
    for fold in folds:
        position = {e: i for i, e in enumerate(rows.era_labels)}
        train_mask = np.isin(rows.era_index, [position[e] for e in fold.train_eras])
        test_mask = np.isin(rows.era_index, [position[e] for e in fold.test_eras])
        train = rows.take(train_mask)  # copies the fold's rows
        test_x = rows.features[test_mask]
        model = LGBMModel(dict(cfg.model.params), cfg.model.num_boost_round, None)
        model.fit(train, None, FitContext(seed=0, run_dir=run_dir))
        out.append(model.predict(test_x).astype(np.float64))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eras", type=int, default=300)
    parser.add_argument("--rows-per-era", type=int, default=1000)
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()

    rows = make_rows(args.eras, args.rows_per_era, args.features)
    folds = cv.plan_folds(rows.era_labels, args.splits, 13)
    cfg = OmegaConf.create({
        "model": model_cfg(args.rounds), "seed": 0, "trainer": {}, "ckpt_path": None,
        "fit": {"holdout_eras": None}, "data": {"embargo_eras": 4},
        "cv": {"n_jobs": 1}})
    run_dir = Path("/tmp/numerlab-bench-cv")
    matrix_mib = rows.features.nbytes / 2**20
    print(f"{len(rows):,} rows x {args.features} int8 features ({matrix_mib:.0f} MiB), "
          f"{args.splits} expanding folds, {args.rounds} rounds")

    ours, theirs, peaks = [], [], []
    for _ in range(args.repeats):
        start = reset_peak()
        t0 = time.perf_counter()
        a = fit_folds(cfg, rows, folds, run_dir)
        ours.append(time.perf_counter() - t0)
        peaks.append((rss_kib("VmHWM") - start) / 1024)
        t0 = time.perf_counter()
        b = plain_loop(rows, folds, cfg, run_dir)
        theirs.append(time.perf_counter() - t0)
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
    print(f"numerlab fold loop  {statistics.median(ours):7.2f} s (median of {args.repeats})")
    print(f"plain loop          {statistics.median(theirs):7.2f} s")
    print(f"time ratio          {statistics.median(ours) / statistics.median(theirs):7.3f}x "
          f"(goal <= 1.1)")
    # the first repeat also pays for importing LightGBM: the later ones show the fold loop
    steady = min(peaks[1:]) if len(peaks) > 1 else peaks[0]
    print(f"peak RSS growth     {steady:7.1f} MiB = {steady / matrix_mib:.2f}x the int8 matrix "
          f"(per repeat: {', '.join(f'{p:.0f}' for p in peaks)} MiB)")
    print(f"max |prediction difference| {diff:.2e}")


if __name__ == "__main__":
    main()
