"""The in-memory dataset every model and scorer works on.

Features stay int8 (Numerai bins 0..4) for the whole life of a run; a model converts a
batch to float when it needs one. Never materialize a float copy of the whole matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numerlab.errors import NumerlabError


@dataclass
class Dataset:
    """Rows of one split, sorted by era.

    ids:        (n,) row ids (str); `load_split` gives a NumPy StringDType array (about 35
                bytes a v5 id, an object array of str takes 84) whose `astype(str)` works as
                on an object array; any 1-d array of str works
    eras:       (n,) object array of era labels such as "0575" (`load_split` shares one str
                object per era: 8 bytes a row)
    features:   (n, k) int8, C-contiguous; columns named by `feature_names`
    target:     (n,) float32, the target being fitted/scored (NaN where unknown)
    aux:        (n, m) float32 auxiliary targets named by `aux_names` (may hold NaN)
    era_labels: the distinct eras in era order, and era_index (n,) int32 each row's position
                in it: computed once by the loader (np.unique over the object array of eras
                takes seconds at full v5 size); derived here when not given
    extra_features: (n, e) int8 feature columns named by `extra_names`, loaded beside the
                model's only for post-processing (`postprocess.features`: validation, live)
    postprocess_columns: the feature columns post-processing works on, resolved by the
                loader from `postprocess.features` / `postprocess.columns` (among
                `feature_names` and `extra_names`); None: post-processing names none
    """

    ids: np.ndarray
    eras: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    target: np.ndarray
    target_name: str
    aux: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    aux_names: list[str] = field(default_factory=list)
    era_labels: list[str] | None = None
    era_index: np.ndarray | None = None
    extra_features: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.int8))
    extra_names: list[str] = field(default_factory=list)
    postprocess_columns: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.features.dtype != np.int8:
            raise TypeError(f"features must be int8, got {self.features.dtype}")
        if self.features.shape != (n, len(self.feature_names)):
            raise ValueError(
                f"features shape {self.features.shape} != ({n}, {len(self.feature_names)})"
            )
        if len(self.eras) != n or len(self.target) != n:
            raise ValueError("ids, eras and target must have the same length")
        if self.aux.size == 0:
            self.aux = np.empty((n, 0), dtype=np.float32)
        if self.extra_features.size == 0 and not self.extra_names:
            self.extra_features = np.empty((n, 0), dtype=np.int8)
        if self.extra_features.shape != (n, len(self.extra_names)):
            raise ValueError(f"extra_features shape {self.extra_features.shape} != "
                             f"({n}, {len(self.extra_names)})")
        if self.era_labels is None or self.era_index is None:
            from numerlab.eras import sort_eras

            labels = sort_eras(np.unique(self.eras.astype(str)).tolist()) if n else []
            position = {era: i for i, era in enumerate(labels)}
            self.era_labels = labels
            self.era_index = np.fromiter((position[str(e)] for e in self.eras), np.int32, n)
        elif len(self.era_index) != n:
            raise ValueError("era_index must have one entry per row")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_eras(self) -> int:
        return len(self.era_labels)

    def era_codes(self) -> np.ndarray:
        """(n,) int32 codes 0..n_eras-1, in era order."""
        return self.era_index

    def take(self, mask_or_index: np.ndarray) -> Dataset:
        """A new Dataset of the selected rows (copies the selected int8 rows only)."""
        index = self.era_index[mask_or_index]
        used = np.flatnonzero(np.bincount(index, minlength=len(self.era_labels)))
        recode = np.full(len(self.era_labels), -1, dtype=np.int32)
        recode[used] = np.arange(len(used), dtype=np.int32)
        return Dataset(
            ids=self.ids[mask_or_index],
            eras=self.eras[mask_or_index],
            features=np.ascontiguousarray(self.features[mask_or_index]),
            feature_names=self.feature_names,
            target=self.target[mask_or_index],
            target_name=self.target_name,
            aux=self.aux[mask_or_index],
            aux_names=self.aux_names,
            era_labels=[self.era_labels[i] for i in used],
            era_index=recode[index],
            extra_features=np.ascontiguousarray(self.extra_features[mask_or_index]),
            extra_names=self.extra_names,
            postprocess_columns=self.postprocess_columns,
        )

    def check_aligned(self, ids: Any) -> None:
        """NumerlabError unless `ids` (a polars/numpy column of a frame of predictions)
        are this dataset's ids, in order: scores and diagnostics join by position."""
        import polars as pl

        mine = pl.Series("id", self.ids, dtype=pl.String)
        if len(self) != len(ids) or not pl.Series("id", ids, dtype=pl.String).equals(mine):
            raise NumerlabError("predictions and features are not aligned by id")

    def feature_columns(self, names: list[str]) -> np.ndarray:
        """(n, len(names)) int8: the named columns, from `features` or `extra_features`
        (a copy). KeyError naming the first column that is in neither."""
        where = {name: (self.features, j) for j, name in enumerate(self.feature_names)}
        where.update({name: (self.extra_features, j) for j, name in enumerate(self.extra_names)
                      if name not in where})
        missing = [name for name in names if name not in where]
        if missing:
            raise KeyError(missing[0])
        out = np.empty((len(self), len(names)), dtype=np.int8)
        for k, name in enumerate(names):
            matrix, j = where[name]
            out[:, k] = matrix[:, j]
        return out

    def take_eras(self, eras: list[str]) -> Dataset:
        """The rows of the given eras (labels of this dataset). Rows are sorted by era, so
        a run of consecutive eras is a slice: a view of the feature matrix, not a copy
        (walk-forward folds and holdouts cost no memory)."""
        position = {era: i for i, era in enumerate(self.era_labels)}
        codes = sorted({position[e] for e in eras if e in position})
        if codes and codes[-1] - codes[0] == len(codes) - 1 and self._era_sorted():
            start, stop = np.searchsorted(self.era_index, [codes[0], codes[-1] + 1])
            return self._slice(int(start), int(stop), codes[0], codes[-1] + 1)
        wanted = np.zeros(len(self.era_labels), dtype=bool)
        wanted[codes] = True
        return self.take(wanted[self.era_index])

    def concat(self, later: Dataset) -> Dataset:
        """This dataset's rows, then `later`'s (same columns; its eras come after these)."""
        if later.feature_names != self.feature_names or later.aux_names != self.aux_names:
            raise ValueError("datasets with different columns cannot be concatenated")
        offset = len(self.era_labels)
        return Dataset(
            ids=np.concatenate([self.ids, later.ids]),
            eras=np.concatenate([self.eras, later.eras]),
            features=np.concatenate([self.features, later.features]),
            feature_names=self.feature_names,
            target=np.concatenate([self.target, later.target]),
            target_name=self.target_name,
            aux=np.concatenate([self.aux, later.aux]),
            aux_names=self.aux_names,
            era_labels=[*self.era_labels, *later.era_labels],
            era_index=np.concatenate([self.era_index, later.era_index + offset]),
            **self._extras_with(later),
        )

    def _extras_with(self, later: Dataset) -> dict:
        """The post-processing columns of both, when both have the same ones (the extra
        int8 columns only when there are any: post-processing may use model features)."""
        if (self.extra_names != later.extra_names
                or self.postprocess_columns != later.postprocess_columns):
            return {}
        extras = {"postprocess_columns": self.postprocess_columns}
        if self.extra_names:
            extras.update(extra_features=np.concatenate([self.extra_features,
                                                         later.extra_features]),
                          extra_names=self.extra_names)
        return extras

    def _era_sorted(self) -> bool:
        if not hasattr(self, "_sorted"):
            self._sorted = bool((np.diff(self.era_index) >= 0).all())
        return self._sorted

    def _slice(self, start: int, stop: int, first_era: int, end_era: int) -> Dataset:
        rows = slice(start, stop)
        return Dataset(
            ids=self.ids[rows], eras=self.eras[rows], features=self.features[rows],
            feature_names=self.feature_names, target=self.target[rows],
            target_name=self.target_name, aux=self.aux[rows], aux_names=self.aux_names,
            era_labels=self.era_labels[first_era:end_era],
            era_index=self.era_index[rows] - first_era,
            extra_features=self.extra_features[rows], extra_names=self.extra_names,
            postprocess_columns=self.postprocess_columns,
        )

    def with_known_target(self) -> Dataset:
        """Rows whose target is not NaN: what a model may fit on."""
        known = ~np.isnan(self.target)
        return self if known.all() else self.take(known)
