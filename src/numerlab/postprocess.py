"""Post-processing of predictions: feature neutralization, per era over a run's rows and,
for the model export, over one live era in numpy alone (`Neutralization`, pickled by value
into the upload)."""

from __future__ import annotations

import numpy as np
import polars as pl

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.scoring import EraSegments
from numerlab.settings import number, text


def neutralize_per_era(values: np.ndarray, features: np.ndarray, eras: np.ndarray,
                       proportion: float = 1.0) -> np.ndarray:
    """values - proportion * X pinv(X) values within each era, X = [features, 1]: numerai-tools
    `neutralize` applied era by era (one least-squares solve per era, see
    `scoring.least_squares_fit`). The int8 features are cast to float64 one era at a time.
    `eras` are labels or integer era codes (`Dataset.era_index`: no sort of strings)."""
    from numerlab.scoring import neutralize

    values = np.asarray(values, dtype=np.float64)
    labels, codes = np.unique(eras, return_inverse=True)
    segments = EraSegments.of(codes, len(labels))
    out = np.empty_like(values)
    out[segments.order] = neutralize(segments, values[segments.order], np.asarray(features),
                                     proportion=proportion)
    return out


class Neutralization:
    """values - proportion * X b within one era, X = [features, 1] with `features` the int8
    (n, k) matrix of the live feature columns named `columns`, and b the least-squares fit
    of values on X (singular values below rcond * largest dropped): the projection
    `neutralize_per_era` removes, for a single era. A live transform
    (`PostProcess.live_transform`): `columns` says which columns it is given."""

    def __init__(self, proportion: float, columns: list[str], rcond: float):
        self.proportion = float(proportion)
        self.columns = [str(c) for c in columns]
        self.rcond = float(rcond)

    def __call__(self, values: np.ndarray, features: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not len(values):
            return values
        if features.shape != (len(values), len(self.columns)):
            raise NumerlabError(f"neutralization: {features.shape} features for "
                                f"{len(values)} predictions and {len(self.columns)} columns")
        x = np.empty((len(values), len(self.columns) + 1))
        x[:, :-1] = features
        x[:, -1] = 1.0
        b = np.linalg.lstsq(x, values, rcond=self.rcond)[0]
        return values - self.proportion * (x @ b)


class PostProcess:
    """What a `postprocess` option builds (`_target_` in conf/postprocess/): a transformation
    of a run's predictions, applied to validation and live alike. A new post-process is one
    yaml file naming a subclass; its constructor checks its settings (before data loads)."""

    def apply(self, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
        """`frame["prediction"]` transformed; rows are aligned with `dataset`."""
        raise NotImplementedError

    def live_transform(self, feature_names: list[str],
                       postprocess_columns: list[str] | None = None):
        """For `task=export`: None (nothing to do) or a small picklable callable over one
        live era, needing numpy only, with `columns`: the live feature columns it reads, by
        name (they need not be among the model's `feature_names`); it is called as
        `transform(predictions, features) -> predictions`, `features` the int8
        (n, len(columns)) matrix of those columns. `postprocess_columns`: the columns the
        config names (`postprocess.features` / `postprocess.columns`), resolved from
        features.json as the loader resolves them (`Dataset.postprocess_columns`); None
        when it names none."""
        raise NumerlabError(f"{type(self).__name__} cannot be exported for Numerai's model "
                            f"upload (it defines no live_transform)")


class NoPostProcess(PostProcess):
    """postprocess=none: the model's predictions as they are."""

    def apply(self, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
        return frame

    def live_transform(self, feature_names: list[str],
                       postprocess_columns: list[str] | None = None):
        return None


class Neutralize(PostProcess):
    """postprocess=neutralize: per-era feature neutralization,
    prediction - proportion * X pinv(X) prediction with X = [features, 1] of the era
    (numerai-tools `neutralize`), against the feature set `features` (a features.json
    `feature_sets` key, loaded for this even when the model trains on another set), or the
    columns `columns`, or else every loaded model feature."""

    def __init__(self, proportion: float, columns: list[str] | None,
                 features: str | None) -> None:
        proportion = number("postprocess.proportion", proportion, minimum=0, maximum=1)
        features = text("postprocess.features", features, optional=True,
                        what="a feature set of features.json (e.g. medium)")
        if features is not None and columns:
            raise NumerlabError("postprocess.features and postprocess.columns are both set: "
                                "choose one")
        self.proportion = proportion
        self.columns = [str(c) for c in columns] if columns else []
        self.feature_set = features

    def neutralizer_columns(self, dataset: Dataset) -> list[str]:
        """The columns to neutralize against: those the loader resolved for post-processing
        (`dataset.postprocess_columns`), else `columns`, else the model's features."""
        if (self.feature_set or self.columns) and dataset.postprocess_columns is not None:
            return dataset.postprocess_columns
        if self.feature_set:
            raise NumerlabError(f"postprocess.features={self.feature_set}: the set's columns "
                                f"were not loaded with these rows (pipeline.load_data loads "
                                f"them)")
        return self.columns or dataset.feature_names

    def apply(self, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
        names = self.neutralizer_columns(dataset)
        features = dataset.features
        if names != dataset.feature_names:
            try:
                features = dataset.feature_columns(names)
            except KeyError as missing:
                raise NumerlabError(f"postprocess.columns: {missing.args[0]!r} is not among "
                                    f"the loaded features") from None
        neutral = neutralize_per_era(frame["prediction"].to_numpy(), features,
                                     dataset.era_index, proportion=self.proportion)
        return frame.with_columns(prediction=pl.Series(neutral))

    def live_transform(self, feature_names: list[str],
                       postprocess_columns: list[str] | None = None):
        """Neutralization of one live era against the columns `apply` would use: the
        resolved `postprocess_columns`, else `columns`, else the model's features."""
        from numerlab.scoring import NEUTRALIZE_RCOND

        if (self.feature_set or self.columns) and postprocess_columns is not None:
            names = list(postprocess_columns)
        elif self.feature_set:
            raise NumerlabError(f"postprocess.features={self.feature_set}: the set's columns "
                                f"were not resolved for the export (export.build_predict "
                                f"reads them from the run's features.json)")
        else:
            names = self.columns or list(feature_names)
        return Neutralization(self.proportion, names, NEUTRALIZE_RCOND)
