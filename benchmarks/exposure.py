"""Feature exposure of a run: computed once for both readers versus once per reader.

    python benchmarks/exposure.py [--rows 200000] [--eras 100] [--features 400] [--repeat 3]

A run reports feature exposure twice: the scores' `max_feature_exposure` (per era, the
largest |corr| of the predictions with any feature) and the diagnostics' per-feature
exposure (per feature, the mean over eras of that |corr|). Both reduce the same (eras x
features) matrix of per-era correlations. The baseline computes it for each reader, as
numerlab did before: `scoring.per_era_feature_exposure` on the features as polars columns
(what scoring was given) plus `diagnostics.feature_exposures` on the int8 matrix. The
candidate is what a run does now: `pipeline.feature_correlations` once, both reductions
from it. Same process, same int8 data; prints both timings, the ratio and the largest
absolute difference of each result.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
from timing import best_time

from numerlab import diagnostics, pipeline, scoring
from numerlab.data.dataset import Dataset


def synthetic(rows: int, eras: int, features: int, seed: int) -> tuple[Dataset, pl.DataFrame]:
    """int8 bins 0..4 in era order, and predictions leaning on a few features."""
    rng = np.random.default_rng(seed)
    era = np.sort(rng.integers(0, eras, rows))
    matrix = rng.integers(0, 5, size=(rows, features), dtype=np.int8)
    prediction = matrix[:, :5].sum(axis=1) + 3 * rng.standard_normal(rows)
    labels = np.array([f"{e:04d}" for e in range(eras)], dtype=object)
    data = Dataset(ids=np.array([f"id{i}" for i in range(rows)], dtype=object),
                   eras=labels[era], features=matrix,
                   feature_names=[f"feature_{j}" for j in range(features)],
                   target=np.zeros(rows, dtype=np.float32), target_name="target")
    frame = pl.DataFrame({"id": pl.Series(data.ids, dtype=pl.String),
                          "era": pl.Series(data.eras, dtype=pl.String),
                          "prediction": prediction})
    return data, frame


def per_reader(data: Dataset, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    scored = frame.with_columns(pl.from_numpy(data.features, schema=data.feature_names,
                                              orient="row"))
    per_era = scoring.per_era_feature_exposure(scored, features=data.feature_names)
    per_feature = diagnostics.feature_exposures(frame["prediction"].to_numpy(), data.features,
                                                data.era_index, data.n_eras)
    return per_era["feature_exposure"].to_numpy(), per_feature


def once(data: Dataset, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    correlations = pipeline.feature_correlations(frame, data)
    per_feature = diagnostics.feature_exposures(frame["prediction"].to_numpy(), data.features,
                                                data.era_index, data.n_eras, correlations)
    return scoring.max_per_era(correlations), per_feature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--eras", type=int, default=100)
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data, frame = synthetic(args.rows, args.eras, args.features, args.seed)
    base_time, (base_era, base_feature) = best_time(lambda: per_reader(data, frame),
                                                    args.repeat)
    new_time, (new_era, new_feature) = best_time(lambda: once(data, frame), args.repeat)
    print(f"{args.rows} rows x {args.features} features, {args.eras} eras (best of "
          f"{args.repeat})")
    print(f"per reader (baseline): {base_time:8.3f} s")
    print(f"once (numerlab):       {new_time:8.3f} s   {base_time / new_time:.2f}x faster")
    print(f"max |diff| per-era exposure:    {np.nanmax(np.abs(base_era - new_era)):.2e}")
    print(f"max |diff| per-feature exposure: "
          f"{np.nanmax(np.abs(base_feature - new_feature)):.2e}")


if __name__ == "__main__":
    main()
