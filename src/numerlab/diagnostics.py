"""Feature diagnostics of a run: which features its validation predictions lean on.

- exposure of feature j = mean over eras of |pearson(prediction, feature_j)| within the era
  (features constant in an era are skipped there), on the predictions as submitted (after
  post-processing);
- gain importance (GBDT models, and the GBDT members of an ensemble, weight-averaged): the
  library's total split gain per feature, normalized to sum 1.

`write_run_diagnostics` writes the top TOP_N of each into `features.parquet` (columns
`kind` exposure|gain, `rank` 1.., `feature`, `value`) and, for an ensemble,
`members.parquet`; `footer` is the line under the terminal table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from numerlab.data.dataset import Dataset

FEATURES_FILE = "features.parquet"
MEMBERS_FILE = "members.parquet"
TOP_N = 20
FOOTER_N = 3
KINDS = ("exposure", "gain")


def feature_exposures(predictions: np.ndarray, features: np.ndarray, era_codes: np.ndarray,
                      n_eras: int, correlations: np.ndarray | None = None) -> np.ndarray:
    """(k,) mean over eras of |pearson(predictions, features[:, j])| within each era; NaN
    for a feature constant in every era. `correlations`: the (n_eras, k) per-era values of
    `scoring.feature_correlations` when the run has them already (scoring computed them for
    its feature exposure)."""
    from numerlab.scoring import feature_correlations

    if correlations is None:
        correlations = feature_correlations(predictions, features, era_codes, n_eras)
    defined = ~np.isnan(correlations).all(axis=0)
    out = np.full(correlations.shape[1], np.nan)
    out[defined] = np.nanmean(correlations[:, defined], axis=0)
    return out


def gain_importance(model: Any, n_features: int) -> np.ndarray | None:
    """(k,) total split gain per feature normalized to sum 1, from the model's own
    `gain_importance(n_features)` (LightGBM, XGBoost, an ensemble's GBDT members
    weight-averaged); None for a model without one."""
    own = getattr(model, "gain_importance", None)
    return None if own is None else own(n_features)


def top_features(kind: str, values: np.ndarray, names: list[str], n: int = TOP_N
                 ) -> pl.DataFrame:
    """The `n` features with the largest values (NaN last) as rows kind, rank, feature,
    value."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")[:n]
    order = [i for i in order if np.isfinite(values[i])]
    return pl.DataFrame({"kind": [kind] * len(order),
                         "rank": pl.Series(range(1, len(order) + 1), dtype=pl.Int32),
                         "feature": [names[i] for i in order],
                         "value": values[order] if order else np.empty(0)},
                        schema={"kind": pl.String, "rank": pl.Int32, "feature": pl.String,
                                "value": pl.Float64})


def feature_diagnostics(model: Any, dataset: Dataset, frame: pl.DataFrame,
                        n: int = TOP_N, correlations: np.ndarray | None = None
                        ) -> pl.DataFrame:
    """The top `n` features by exposure of `frame["prediction"]` (rows aligned with
    `dataset`, checked by id) and, where the model has it, by gain importance.
    `correlations`: the run's `pipeline.feature_correlations` of these rows, if computed."""
    dataset.check_aligned(frame["id"])
    exposure = feature_exposures(frame["prediction"].to_numpy(), dataset.features,
                                 dataset.era_index, dataset.n_eras, correlations)
    parts = [top_features("exposure", exposure, dataset.feature_names, n)]
    gain = gain_importance(model, len(dataset.feature_names))
    if gain is not None:
        parts.append(top_features("gain", gain, dataset.feature_names, n))
    return pl.concat(parts)


def write_run_diagnostics(out_dir: Path, model: Any, dataset: Dataset,
                          frame: pl.DataFrame, correlations: np.ndarray | None = None
                          ) -> pl.DataFrame:
    """features.parquet (and members.parquet for an ensemble) in `out_dir`; returns the
    features frame for `footer`."""
    features = feature_diagnostics(model, dataset, frame, correlations=correlations)
    features.write_parquet(Path(out_dir) / FEATURES_FILE)
    if hasattr(model, "member_predictions"):
        from numerlab.models.ensemble import members_frame

        members_frame(model, dataset, frame).write_parquet(Path(out_dir) / MEMBERS_FILE)
    return features


def footer(features: pl.DataFrame, n: int = FOOTER_N) -> str:
    """One line per kind: `top exposure: a 0.123, b 0.101, ...` (names without their
    `feature_` prefix, to fit a terminal line)."""
    lines = []
    for kind in KINDS:
        rows = features.filter((pl.col("kind") == kind) & (pl.col("rank") <= n))
        if rows.height:
            pairs = zip(rows["feature"], rows["value"], strict=True)
            cells = ", ".join(f"{f.removeprefix('feature_')} {v:.3f}" for f, v in pairs)
            lines.append(f"top {kind}: {cells}")
    return "\n".join(lines)


def print_footer(features: pl.DataFrame) -> None:
    """The footer under the terminal metrics table (dim)."""
    from rich.console import Console

    text = footer(features)
    if text:
        Console().print(text, style="dim", highlight=False)
