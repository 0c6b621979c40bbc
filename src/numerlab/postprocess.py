"""Post-processing of predictions: feature neutralization and rank normalization."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError


def rank_unit(values: np.ndarray) -> np.ndarray:
    """Tie-kept percentile rank into (0, 1): (rank_average - 0.5) / n."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    return (rankdata(values, method="average") - 0.5) / len(values)


def neutralize_per_era(values: np.ndarray, features: np.ndarray, eras: np.ndarray,
                       proportion: float = 1.0) -> np.ndarray:
    """values - proportion * X pinv(X) values within each era, X = [features, 1]: numerai-tools
    `neutralize` applied era by era (one least-squares solve per era, see
    `scoring.least_squares_fit`). The int8 features are cast to float64 one era at a time."""
    from numerlab.scoring import EraSegments, neutralize

    values = np.asarray(values, dtype=np.float64)
    labels, codes = np.unique(eras, return_inverse=True)
    segments = EraSegments.of(codes, len(labels))
    out = np.empty_like(values)
    out[segments.order] = neutralize(segments, values[segments.order], np.asarray(features),
                                     proportion=proportion)
    return out


def apply(pp_cfg: Any, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """Apply the configured post-processing to `frame["prediction"]` (rows aligned with
    `dataset`)."""
    kind = pp_cfg["kind"]
    if kind == "none":
        return frame
    if kind == "neutralize":
        proportion = float(pp_cfg["proportion"])
        if not 0.0 <= proportion <= 1.0:
            raise NumerlabError(f"postprocess.proportion={proportion} must be within [0, 1]")
        features = dataset.features
        names = list(pp_cfg.get("columns") or [])
        if names:
            missing = [n for n in names if n not in dataset.feature_names]
            if missing:
                raise NumerlabError(
                    f"postprocess.columns: {missing[0]!r} is not among the loaded features")
            index = [dataset.feature_names.index(n) for n in names]
            features = dataset.features[:, index]
        neutral = neutralize_per_era(frame["prediction"].to_numpy(), features,
                                     dataset.eras, proportion=proportion)
        return frame.with_columns(prediction=pl.Series(neutral))
    raise NumerlabError(f"postprocess.kind={kind!r} is not one of: none, neutralize")
