"""Data: the built-in synthetic generator, the Numerai v5 local layout reader and the
in-memory `Dataset` (int8 features, float32 targets)."""

from numerlab.data.dataset import Dataset
from numerlab.data.source import build_source, prepare
from numerlab.data.synthetic import generate
from numerlab.data.v5 import (
    Splits,
    load_split,
    load_splits,
    read_features_json,
    resolve_features,
    resolve_targets,
)

__all__ = [
    "Dataset",
    "Splits",
    "build_source",
    "generate",
    "load_split",
    "load_splits",
    "prepare",
    "read_features_json",
    "resolve_features",
    "resolve_targets",
]
