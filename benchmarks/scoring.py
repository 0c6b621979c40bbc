"""Per-era CORR + MMC (+ BMC): numerlab's vectorized scorer versus numerai-tools era by era.

    python benchmarks/scoring.py [--rows 1000000] [--eras 200] [--seed 0] [--repeat 3] [--bmc]

Builds Numerai-like rows (continuous prediction, meta model and benchmark model, target in
5 bins, eras of uneven size), scores them both ways in the same process, and prints both
timings, the speed-up and the largest absolute difference between the two sets of scores.
With --bmc both sides also score BMC (`correlation_contribution` against the benchmark).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import polars as pl
from numerai_tools.scoring import correlation_contribution, numerai_corr
from timing import best_times

from numerlab.scoring import per_era_scores


def synthetic_rows(n_rows: int, n_eras: int, seed: int) -> pl.DataFrame:
    """Rows sorted by era (as Numerai ships them), eras of uneven size; the prediction and
    the meta model both weakly predict a target in 5 bins."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, n_eras)
    era = np.sort(rng.choice(n_eras, size=n_rows, p=weights / weights.sum()))
    signal = rng.standard_normal(n_rows)
    target = np.clip(np.round(2 + signal + 2 * rng.standard_normal(n_rows)), 0, 4) / 4
    return pl.DataFrame(
        {
            "era": pl.Series([f"{e:04d}" for e in range(n_eras)]).gather(era),
            "prediction": 0.1 * signal + rng.standard_normal(n_rows),
            "meta_model": 0.2 * signal + rng.standard_normal(n_rows),
            "benchmark": 0.15 * signal + rng.standard_normal(n_rows),
            "target": target,
        }
    )


def numerai_tools_per_era(df: pd.DataFrame, bmc: bool = False) -> pd.DataFrame:
    """The baseline: pandas groupby-apply calling numerai-tools on each era."""

    def score(era_rows: pd.DataFrame) -> pd.Series:
        predictions = era_rows[["prediction"]]
        scores = {
            "corr": numerai_corr(predictions, era_rows["target"]).iloc[0],
            "mmc": correlation_contribution(
                predictions, era_rows["meta_model"], era_rows["target"]
            ).iloc[0],
        }
        if bmc:
            scores["bmc"] = correlation_contribution(
                predictions, era_rows["benchmark"], era_rows["target"]
            ).iloc[0]
        return pd.Series(scores)

    return df.groupby("era").apply(score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--eras", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each side")
    parser.add_argument("--bmc", action="store_true", help="also score BMC on both sides")
    args = parser.parse_args()
    benchmark = "benchmark" if args.bmc else None
    columns = ["corr", "mmc", "bmc"] if args.bmc else ["corr", "mmc"]

    rows = synthetic_rows(args.rows, args.eras, args.seed)
    pandas_rows = rows.to_pandas()
    print(f"{rows.height:,} rows, {args.eras} eras")

    fast_wall, fast_cpu, fast = best_times(
        lambda: per_era_scores(rows, meta_model="meta_model", benchmark=benchmark), args.repeat
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' groupby-apply deprecation chatter
        base_wall, base_cpu, base = best_times(
            lambda: numerai_tools_per_era(pandas_rows, args.bmc), args.repeat
        )

    ours = fast.to_pandas().set_index("era")
    max_diff = float(np.max(np.abs(ours[columns].to_numpy() - base[columns].to_numpy())))
    print(f"best of {args.repeat}                               wall        CPU")
    label = "+".join(columns).upper()
    print(f"numerlab per_era_scores ({label:8s}): {fast_wall * 1e3:8.1f} ms "
          f"{fast_cpu * 1e3:8.1f} ms")
    print(f"numerai-tools groupby-apply:        {base_wall * 1e3:8.1f} ms {base_cpu * 1e3:8.1f} ms")
    print(
        f"speed-up:                           {base_wall / fast_wall:8.1f}x  "
        f"{base_cpu / fast_cpu:8.1f}x"
    )
    print(f"max |difference|:                   {max_diff:9.2e}")
    if not max_diff < 1e-9:
        raise SystemExit("scores differ from numerai-tools by more than 1e-9")


if __name__ == "__main__":
    main()
