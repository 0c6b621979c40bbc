"""The Numerai v5 data dir, by name: the files a dir holds, their key columns, and the
manifest numerlab keeps of what it downloaded there. Every reader and writer of a data dir
(the v5 reader, the synthetic generator, the download, the DVC stages) takes the names
from here.

    train.parquet, validation.parquet (data_type validation | test), live.parquet,
    features.json (feature_sets, targets), meta_model.parquet (numerai_meta_model),
    {train,validation,live}_benchmark_models.parquet, .numerlab-downloads.json
"""

from __future__ import annotations

from pathlib import Path

from numerlab.errors import NumerlabError

TRAIN_FILE = "train.parquet"
VALIDATION_FILE = "validation.parquet"
LIVE_FILE = "live.parquet"
FEATURES_FILE = "features.json"
META_MODEL_FILE = "meta_model.parquet"
REQUIRED_FILES = (TRAIN_FILE, VALIDATION_FILE, LIVE_FILE, FEATURES_FILE)
SPLIT_NAMES = ("train", "validation", "live")
SPLIT_FILES = dict(zip(SPLIT_NAMES, (TRAIN_FILE, VALIDATION_FILE, LIVE_FILE), strict=True))

ID = "id"
ERA = "era"
DATA_TYPE = "data_type"
META_MODEL_COLUMN = "numerai_meta_model"
FEATURE_MAX = 4  # features are bins 0..4

BENCHMARK_SUFFIX = "_benchmark_models.parquet"  # <split>_benchmark_models.parquet
BENCHMARK_FILES = tuple(f"{split}{BENCHMARK_SUFFIX}" for split in ("train", "validation"))

MANIFEST_FILE = ".numerlab-downloads.json"
"""What numerlab downloaded into a dir (file -> source, size, etag); a dir with one is a
dir numerlab manages and may refresh."""


def benchmark_file(split: str) -> str:
    """`<split>_benchmark_models.parquet`."""
    return f"{split}{BENCHMARK_SUFFIX}"


def check_layout(data_dir: Path) -> None:
    """NumerlabError naming the first missing required file of a v5 data dir."""
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            raise NumerlabError(f"missing data file {data_dir / name} (Numerai v5 layout needs "
                                f"{', '.join(REQUIRED_FILES)})")
