"""Per-era feature neutralization and FNC: numerlab's shared solver versus numerai-tools.

    python benchmarks/neutralize.py [--rows 141000] [--eras 56] [--fnc-features 400]
        [--neutralize-rows 141000] [--neutralize-features 780] [--seed 0] [--repeat 3]
        [--threads 1] [--only fnc|neutralize]

Builds Numerai-like eras (int8 features binned 0..4 within each era from a latent with
factor structure, so features of a group move together; in the first quarter of the eras a
few features are filled with 2, as Numerai fills features it did not have yet), then, in
the same process:

- FNC: `per_era_scores(frame, features=...)` (CORR + FNC) versus numerai-tools
  `feature_neutral_corr` applied era by era through pandas `groupby(...).apply`;
- neutralization: `postprocess.neutralize_per_era` versus numerai-tools `neutralize`
  applied era by era the same way, at the medium feature-set width (780).

Prints both timings (best of --repeat for numerlab, one run for numerai-tools), the
speed-up, the largest absolute difference, and the peak memory traced by tracemalloc
(numpy allocations) during one call of each, numerai-tools over its first 4 eras only.

Both sides run with one BLAS thread by default: on a machine whose cores other jobs share,
OpenBLAS threads that wait on each other make multi-threaded timings swing 10-30x from run
to run (numerai-tools' FNC took 4.8 s with one thread and 145 s with two on a loaded 2-core
machine). `--threads 0` lets BLAS choose, as the library itself does.
"""

from __future__ import annotations

import argparse
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import polars as pl
from numerai_tools.scoring import feature_neutral_corr, neutralize
from timing import best_time

from numerlab.postprocess import neutralize_per_era
from numerlab.scoring import per_era_scores

FILLED_FEATURE_SHARE = 0.05
"""Share of the features filled with 2 in the first quarter of the eras."""


def era_sizes(n_rows: int, n_eras: int, rng: np.random.Generator) -> np.ndarray:
    """Era lengths within +-10% of each other, summing to n_rows."""
    weights = rng.uniform(0.9, 1.1, n_eras)
    sizes = np.floor(weights / weights.sum() * n_rows).astype(int)
    sizes[: n_rows - sizes.sum()] += 1
    return sizes


def era_features(n: int, loadings: np.ndarray, group: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """One era's int8 features: quintile bins (within the era) of a factor-structured latent."""
    n_factors = int(group.max()) + 1
    latent = (rng.standard_normal((n, n_factors))[:, group] * loadings
              + rng.standard_normal((n, len(group))) * np.sqrt(1 - loadings**2))
    ranks = np.argsort(np.argsort(latent, axis=0), axis=0)
    return (ranks * 5 // n).astype(np.int8)


def numerai_like(n_rows: int, n_eras: int, n_features: int, seed: int) -> pd.DataFrame:
    """Rows sorted by era: era, int8 features, a prediction and a 5-bin target that both
    weakly follow the features."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, max(2, n_features // 10), n_features)
    loadings = rng.uniform(0.3, 0.8, n_features)
    sizes = era_sizes(n_rows, n_eras, rng)
    features = np.concatenate([era_features(n, loadings, group, rng) for n in sizes])
    filled = rng.choice(n_features, int(FILLED_FEATURE_SHARE * n_features), replace=False)
    features[: sizes[: n_eras // 4].sum(), filled[:, None]] = 2
    weights = rng.standard_normal(n_features) / np.sqrt(n_features)
    signal = (features - 2.0) @ weights
    noise = signal + 3 * rng.standard_normal(n_rows)
    names = [f"feature_{j}" for j in range(n_features)]
    frame = pd.DataFrame(features, columns=names)
    frame.insert(0, "era", np.repeat([f"{e:04d}" for e in range(n_eras)], sizes))
    frame["prediction"] = signal + 2 * rng.standard_normal(n_rows)
    frame["target"] = np.digitize(noise, np.quantile(noise, [0.05, 0.25, 0.75, 0.95])) / 4
    return frame


def traced_peak(fn) -> int:
    """Peak bytes tracemalloc sees allocated during fn() (numpy's arrays are traced)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def per_era_apply(frame: pd.DataFrame, score) -> pd.Series | pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' groupby-apply deprecation chatter
        return frame.groupby("era", group_keys=False).apply(score)


def numerai_tools_fnc(frame: pd.DataFrame, names: list[str]) -> pd.Series:
    return per_era_apply(frame, lambda g: feature_neutral_corr(
        g[["prediction"]], g[names], g["target"]).iloc[0])


def numerai_tools_neutralize(frame: pd.DataFrame, names: list[str]) -> pd.Series:
    return per_era_apply(frame, lambda g: neutralize(g[["prediction"]], g[names])["prediction"])


def first_eras(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return frame[frame["era"].isin(frame["era"].unique()[:n])]


def report(name: str, ours_s: float, base_s: float, diff: float, ours_peak: int,
           base_peak: int, matrix_bytes: int) -> None:
    mb = 2.0**20
    print(f"{name}: numerlab {ours_s:7.3f} s   numerai-tools {base_s:7.3f} s   "
          f"speed-up {base_s / ours_s:5.1f}x   max |diff| {diff:.1e}")
    print(f"{'':{len(name)}}  peak traced memory: numerlab {ours_peak / mb:7.1f} MiB "
          f"({ours_peak / matrix_bytes:.2f}x the int8 feature matrix), numerai-tools "
          f"{base_peak / mb:7.1f} MiB over 4 eras")


def fnc_case(args: argparse.Namespace) -> bool:
    """Time, compare and report FNC; True when it matches numerai-tools within 1e-9."""
    frame = numerai_like(args.rows, args.eras, args.fnc_features, args.seed)
    names = [c for c in frame.columns if c.startswith("feature_")]
    rows = pl.from_pandas(frame)
    print(f"FNC: {len(frame):,} rows x {len(names)} features, {args.eras} eras")
    ours_s, ours = best_time(lambda: per_era_scores(rows, features=names), args.repeat)
    base_s, base = best_time(lambda: numerai_tools_fnc(frame, names), 1)
    diff = float(np.max(np.abs(ours["fnc"].to_numpy() - base.sort_index().to_numpy())))
    report("FNC", ours_s, base_s, diff, traced_peak(lambda: per_era_scores(rows, features=names)),
           traced_peak(lambda: numerai_tools_fnc(first_eras(frame, 4), names)),
           len(frame) * len(names))
    return diff <= 1e-9


def neutralize_case(args: argparse.Namespace) -> bool:
    """Time, compare and report neutralization; True when it matches within 1e-9."""
    frame = numerai_like(args.neutralize_rows, args.eras, args.neutralize_features, args.seed)
    names = [c for c in frame.columns if c.startswith("feature_")]
    features = frame[names].to_numpy()
    values, eras = frame["prediction"].to_numpy(), frame["era"].to_numpy()
    print(f"neutralize: {len(frame):,} rows x {len(names)} features, {args.eras} eras")
    ours_s, ours = best_time(lambda: neutralize_per_era(values, features, eras), args.repeat)
    base_s, base = best_time(lambda: numerai_tools_neutralize(frame, names), 1)
    diff = float(np.max(np.abs(ours - base.loc[frame.index].to_numpy())))
    report("neutralize", ours_s, base_s, diff,
           traced_peak(lambda: neutralize_per_era(values, features, eras)),
           traced_peak(lambda: numerai_tools_neutralize(first_eras(frame, 4), names)),
           features.nbytes)
    return diff <= 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=141_000, help="rows of the FNC case")
    parser.add_argument("--eras", type=int, default=56)
    parser.add_argument("--fnc-features", type=int, default=400)
    parser.add_argument("--neutralize-rows", type=int, default=141_000)
    parser.add_argument("--neutralize-features", type=int, default=780)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for numerlab")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for both sides; 0: BLAS's own choice")
    parser.add_argument("--only", choices=["fnc", "neutralize"], default=None)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads or None, user_api="blas"):
        print(f"BLAS threads: {args.threads or 'BLAS default'}")
        failed = [name for name, case in (("fnc", fnc_case), ("neutralize", neutralize_case))
                  if args.only in (None, name) and not case(args)]
    if failed:
        raise SystemExit(f"{', '.join(failed)} differ from numerai-tools by more than 1e-9")


if __name__ == "__main__":
    main()
