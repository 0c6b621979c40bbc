"""Numerai v5 local layout: check it, resolve names against features.json, load splits.

A data dir holds `train.parquet`, `validation.parquet` (`data_type` validation | test),
`live.parquet`, `features.json` (`feature_sets`, `targets`) and optionally
`meta_model.parquet`. Each parquet has an `id` column (pandas writes its `id` index as one),
an `era` string such as "0575" ("X" in live) and int8 `feature_*` columns.

Loading never builds a float or pandas copy of the feature matrix: a first pass reads the
small columns (`era`, `data_type`, the target) in batches to choose rows and their era
order, a second one the ids (into a NumPy StringDType array, about 35 bytes a v5 id) and
targets of the chosen rows, then the feature columns are read one row group and a bounded
slice of columns at a time straight into one preallocated C-contiguous int8 matrix. Row
groups without a chosen row are never decoded, so `era_stride` skips them on era-sorted
files. The peak RSS growth of a load is about 1.45x the int8 matrix (benchmarks/load.py).
"""

from __future__ import annotations

import ctypes
import difflib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from numerlab.data.dataset import Dataset
from numerlab.data.layout import (
    BENCHMARK_FILES,
    DATA_TYPE,
    ERA,
    FEATURE_MAX,
    FEATURES_FILE,
    ID,
    LIVE_FILE,
    META_MODEL_COLUMN,
    META_MODEL_FILE,
    SPLIT_NAMES,
    TRAIN_FILE,
    VALIDATION_FILE,
)
from numerlab.eras import era_number, sort_eras
from numerlab.errors import NumerlabError, message_line

if TYPE_CHECKING:
    import polars as pl

    from numerlab.data.source import DataSource

log = logging.getLogger(__name__)

MAIN_BENCHMARK = re.compile(r"^v(\d+)_lgbm_ender20$")

# int8 cells decoded per read: bounds the transient memory next to the feature matrix.
READ_CHUNK_CELLS = 8 * 2**20
MIN_READ_COLUMNS = 8
# Threads copying a decoded slice into the matrix (memory-bound: two keep up with Arrow).
PUT_THREADS = 2
TRANSPOSE_TILE_ROWS = 32_768
# Rows per batch of the small columns (era, data_type, id, targets): no Arrow copy of a
# whole column, and no temporary of all ids, is ever built.
SMALL_BATCH_ROWS = 65_536


# --- layout -----------------------------------------------------------------------------

def read_features_json(data_dir: str | Path) -> dict:
    """features.json of `data_dir`: {"feature_sets": {name: [columns]}, "targets": [names]}."""
    path = Path(data_dir) / FEATURES_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise NumerlabError(f"missing data file {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NumerlabError(f"cannot read {path}: {message_line(exc)}") from None
    if not isinstance(meta, dict):
        raise NumerlabError(f"{path} must hold a JSON object")
    sets = meta.get("feature_sets")
    if not isinstance(sets, dict) or not all(isinstance(v, list) for v in sets.values()):
        raise NumerlabError(f"{path} has no 'feature_sets' object of name -> column list")
    if not isinstance(meta.get("targets"), list):
        raise NumerlabError(f"{path} has no 'targets' list")
    return meta


def resolve_features(meta: Mapping[str, Any], features_cfg: Mapping[str, Any]) -> list[str]:
    """The feature columns to load: `features_cfg.columns` if given, else the feature set
    `features_cfg.set` of features.json. Names are checked against features.json."""
    sets: dict[str, list[str]] = meta["feature_sets"]
    columns = features_cfg.get("columns")
    if columns is not None:
        names = list(dict.fromkeys(str(c) for c in columns))  # drop repeats, keep order
        if not names:
            raise NumerlabError("features.columns is an empty list")
        known = set(sets["all"]) if "all" in sets else {c for v in sets.values() for c in v}
        unknown = [c for c in names if c not in known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise NumerlabError(f"features.json has no feature {unknown[0]!r}{more}"
                                f"{_did_you_mean(unknown[0], known)}")
        return names
    name = features_cfg.get("set")
    if name not in sets:
        raise NumerlabError(f"features.json has no feature set {name!r} "
                            f"(available: {', '.join(sets)})")
    if not sets[name]:
        raise NumerlabError(f"feature set {name!r} of features.json is empty")
    return list(sets[name])


def resolve_targets(meta: Mapping[str, Any], target_cfg: Mapping[str, Any]
                    ) -> tuple[str, list[str]]:
    """(target, aux targets) of `target_cfg`, checked against features.json "targets".
    The main target is dropped from aux; repeats are dropped."""
    known = [str(t) for t in meta["targets"]]
    name = target_cfg.get("name")
    aux = [str(a) for a in (target_cfg.get("aux") or [])]
    for candidate in [name, *aux]:
        if candidate not in known:
            raise NumerlabError(f"unknown target {candidate!r}: features.json targets are "
                                f"{_some(known, candidate)}")
    return str(name), [a for a in dict.fromkeys(aux) if a != name]


# --- splits -----------------------------------------------------------------------------

@dataclass
class Splits:
    """What a run trains on, scores on and predicts for."""

    train: Dataset | None
    validation: Dataset | None
    live: Dataset | None
    meta_model: pl.DataFrame | None  # id, era, numerai_meta_model; None without the file
    feature_names: list[str]
    target_name: str
    aux_names: list[str]
    data_dir: Path
    benchmarks: pl.DataFrame | None = None  # id, benchmark: the scoring.benchmark column
    benchmark_name: str | None = None


def load_splits(source: DataSource, features_cfg: Mapping[str, Any],
                target_cfg: Mapping[str, Any],
                splits: Sequence[str] = SPLIT_NAMES,
                extra_features: Mapping[str, Any] | None = None,
                post_processed: Sequence[str] = ("validation", "live")) -> Splits:
    """Load the requested splits of the built data source's dir (`source.dir`, its
    `era_stride` and `embargo_eras`, checked when it was built) with the configured features
    and targets.

    train:      every `era_stride`-th era of train.parquet (the first era is kept), rows with
                a NaN target dropped.
    validation: rows of validation.parquet with data_type "validation" whose era is more than
                `embargo_eras` after the last *kept* train era (dropped train eras leak
                nothing), rows with a NaN target dropped because they cannot be scored.
    live:       every row of live.parquet; targets NaN (absent target columns are allowed).
    All splits are sorted by era (stable).
    extra_features: {set, columns, key} naming the columns post-processing works on (see
                `pipeline.postprocess_columns`); validation and live get them as
                `postprocess_columns`, those not among the model's features read in the same
                pass into `extra_features` (no column is read twice).
    """
    unknown = [s for s in splits if s not in SPLIT_NAMES]
    if unknown:
        raise NumerlabError(f"unknown split {unknown[0]!r} (known: {', '.join(SPLIT_NAMES)})")
    data_dir, era_stride, embargo = source.dir, source.era_stride, source.embargo_eras
    meta = read_features_json(data_dir)
    feature_names = resolve_features(meta, features_cfg)
    target_name, aux_names = resolve_targets(meta, target_cfg)
    columns = {"feature_names": feature_names, "target_name": target_name,
               "aux_names": aux_names}
    postprocess_names = resolve_extra_features(meta, extra_features)
    scored_columns = {**columns, "extra_names": [c for c in postprocess_names or []
                                                 if c not in feature_names]}

    train = validation = live = None
    if "train" in splits or "validation" in splits:
        train_eras = split_eras(data_dir / TRAIN_FILE)[::era_stride]
        if not train_eras:
            raise NumerlabError(f"{data_dir / TRAIN_FILE} has no rows")
        if "train" in splits:
            # post-processed (task=cv scores training eras): with its columns, as validation
            scored = "train" in post_processed
            train = load_split(data_dir / TRAIN_FILE, **(scored_columns if scored else columns),
                               eras=train_eras, drop_nan_target=True)
            _require_rows(train, data_dir / TRAIN_FILE)
            if scored:
                train.postprocess_columns = postprocess_names
    if "validation" in splits:
        path = data_dir / VALIDATION_FILE
        with _open(path) as pf:
            data_type = "validation" if DATA_TYPE in pf.schema_arrow.names else None
        validation_eras = split_eras(path, data_type=data_type)
        if not validation_eras:
            raise NumerlabError(f"{path} has no rows with data_type 'validation'")
        last_embargoed = era_number(train_eras[-1], TRAIN_FILE) + embargo
        kept = [e for e in validation_eras if era_number(e, VALIDATION_FILE) > last_embargoed]
        if not kept:
            raise NumerlabError(
                f"embargo of {embargo} eras leaves no validation eras (last train era "
                f"{train_eras[-1]}, last validation era {validation_eras[-1]})")
        validation = load_split(path, **scored_columns, eras=kept, data_type=data_type,
                                drop_nan_target=True)
        validation.postprocess_columns = postprocess_names
        _require_rows(validation, path)
        _require_two_rows_per_era(validation, path)
    if "live" in splits:
        live = load_split(data_dir / LIVE_FILE, **scored_columns, require_targets=False)
        live.postprocess_columns = postprocess_names
        if len(live) == 0:
            raise NumerlabError(f"{data_dir / LIVE_FILE} has no rows: there is nothing to "
                                f"predict for a submission (an interrupted download? "
                                f"task=download fetches the current round's)")
    meta_model = read_meta_model(data_dir / META_MODEL_FILE)
    if meta_model is None and "validation" in splits:
        log.warning("no %s in %s: MMC is not computed", META_MODEL_FILE, data_dir)
    return Splits(train=train, validation=validation, live=live,
                  meta_model=meta_model,
                  feature_names=feature_names, target_name=target_name,
                  aux_names=aux_names, data_dir=data_dir)


def resolve_extra_features(meta: Mapping[str, Any], extra: Mapping[str, Any] | None
                           ) -> list[str] | None:
    """The columns `extra` ({set, columns, key}) names, checked against features.json; errors
    name `extra["key"]` (e.g. postprocess.features). None for no `extra`."""
    if extra is None:
        return None
    key = extra.get("key", "postprocess.features")
    try:
        return resolve_features(meta, {"set": extra.get("set"), "columns": extra.get("columns")})
    except NumerlabError as exc:
        raise NumerlabError(f"{key}: {exc}") from None


def _require_two_rows_per_era(dataset: Dataset, path: Path) -> None:
    """Per-era CORR needs two scorable rows: an era with one is named before any fit."""
    counts = np.bincount(dataset.era_index, minlength=dataset.n_eras)
    if len(counts) and counts.min() < 2:
        era = dataset.era_labels[int(np.argmin(counts))]
        raise NumerlabError(f"{path}: era '{era}' has {int(counts.min())} row with a known "
                            f"{dataset.target_name!r}; scoring needs at least 2 per era")


def _require_rows(dataset: Dataset, path: Path) -> None:
    if len(dataset) == 0:
        raise NumerlabError(f"{path}: no rows with a known {dataset.target_name!r} in the "
                            f"chosen eras")


def read_meta_model(path: Path) -> pl.DataFrame | None:
    """`id`, `era` (where the file has it) and `numerai_meta_model`; None if there is no file."""
    if not Path(path).is_file():
        return None
    import polars as pl

    with _open(path) as pf:
        schema = pf.schema_arrow
        _require_columns(schema, path, [ID, META_MODEL_COLUMN])
        columns = [c for c in (ID, ERA, META_MODEL_COLUMN) if c in schema.names]
        table = _read(pf, path, columns=columns)
    repeated = _repeated_ids(table[ID])
    if repeated:
        raise_repeated_ids(path, repeated)
    arrays = [_as_strings(table[ID]), *([_era_strings(table[ERA])] if ERA in columns else []),
              pc.cast(table[META_MODEL_COLUMN], pa.float64())]
    return pl.from_arrow(pa.table(arrays, names=columns))


def benchmark_columns(data_dir: Path) -> tuple[Path | None, list[str]]:
    """The validation (else train) benchmark-models file of `data_dir` and its model columns."""
    for name in reversed(BENCHMARK_FILES):
        path = Path(data_dir) / name
        if path.is_file():
            with _open(path) as pf:
                return path, [c for c in pf.schema_arrow.names if c not in (ID, ERA, DATA_TYPE)]
    return None, []


def resolve_benchmark(data_dir: Path, setting: str | None) -> str | None:
    """The benchmark column `scoring.benchmark` names: `auto` = the newest
    `v<N>_lgbm_ender20` of the benchmark-models file when there is one (else no BMC), null =
    none, a name = that column (an error listing the columns when the file lacks it)."""
    if setting is None:
        return None
    path, columns = benchmark_columns(data_dir)
    if str(setting) == "auto":
        main = [(int(m.group(1)), c) for c in columns if (m := MAIN_BENCHMARK.match(c))]
        return max(main)[1] if main else None
    if path is None:
        raise NumerlabError(f"scoring.benchmark={setting}: {data_dir} has no "
                            f"{BENCHMARK_FILES[1]} (or {BENCHMARK_FILES[0]})")
    if setting not in columns:
        raise NumerlabError(f"scoring.benchmark={setting}: {path.name} has no such column "
                            f"(it has {_some(columns, setting)})")
    return str(setting)


def read_benchmarks(data_dir: Path, column: str) -> pl.DataFrame:
    """`id` and `benchmark` (the named column) over the train and validation benchmark
    files of `data_dir` that exist."""
    import polars as pl

    frames = []
    for name in BENCHMARK_FILES:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        with _open(path) as pf:
            _require_columns(pf.schema_arrow, path, [ID, column])
            table = _read(pf, path, columns=[ID, column])
        repeated = _repeated_ids(table[ID])
        if repeated:
            raise_repeated_ids(path, repeated)
        frames.append(pl.from_arrow(pa.table(
            [_as_strings(table[ID]), pc.cast(table[column], pa.float64())],
            names=[ID, "benchmark"])))
    frame = pl.concat(frames)
    if len(frames) > 1 and frame[ID].is_duplicated().any():
        example = frame.filter(frame[ID].is_duplicated())[ID][0]
        raise NumerlabError(f"{data_dir}: id {example!r} is in both {BENCHMARK_FILES[0]} "
                            f"and {BENCHMARK_FILES[1]}; a row has one benchmark value")
    return frame


def split_eras(path: str | Path, data_type: str | None = None) -> list[str]:
    """The distinct eras of a parquet file in era order (only rows of `data_type` if given)."""
    columns = [ERA] + ([DATA_TYPE] if data_type is not None else [])
    with _open(path) as pf:
        _require_columns(pf.schema_arrow, path, columns)
        table = _read(pf, path, columns=columns)
    eras = _era_strings(table[ERA])
    if data_type is not None:
        eras = eras.filter(pc.fill_null(pc.equal(_as_strings(table[DATA_TYPE]), data_type),
                                        False))
    return sort_eras(pc.unique(eras).to_pylist())


def load_split(path: str | Path, feature_names: Sequence[str], target_name: str,
               aux_names: Sequence[str] = (), *, eras: Iterable[str] | None = None,
               data_type: str | None = None, drop_nan_target: bool = False,
               require_targets: bool = True, extra_names: Sequence[str] = ()) -> Dataset:
    """Rows of one v5-layout parquet file as a Dataset, sorted by era (stable).

    eras:            keep only rows of these eras (None: all)
    data_type:       keep only rows whose `data_type` equals it (None: all)
    drop_nan_target: drop rows whose `target_name` is NaN
    require_targets: if False, absent target/aux columns read as NaN (live.parquet)
    extra_names:     more feature columns, read in the same pass into `extra_features`
    Only `id`, `era`, the features, the targets (and `data_type` when filtering) are read.
    """
    path = Path(path)
    with _open(path) as pf:
        return _load(pf, path, list(feature_names), target_name, list(aux_names), eras,
                     data_type, drop_nan_target, require_targets, list(extra_names))


def _load(pf: pq.ParquetFile, path: Path, feature_names: list[str], target_name: str,
          aux_names: list[str], eras: Iterable[str] | None, data_type: str | None,
          drop_nan_target: bool, require_targets: bool, extra_names: list[str] = ()
          ) -> Dataset:
    schema = pf.schema_arrow  # a property that rebuilds the schema on every access
    targets = [target_name, *aux_names]
    _require_columns(schema, path, [ID, ERA, *feature_names, *extra_names,
                                    *([DATA_TYPE] if data_type is not None else []),
                                    *(targets if require_targets else [])])
    for name in [*feature_names, *extra_names]:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise NumerlabError(f"{path}: feature column {name!r} has type {kind}, "
                                f"expected int8 bins 0..{FEATURE_MAX}")
    present = set(schema.names)
    nan_filter = target_name if drop_nan_target and target_name in present else None
    era_labels, row_era, destination = _choose_rows(pf, path, eras, data_type, nan_filter)
    plan = list(_row_group_plan(pf, destination))
    del destination

    n = len(row_era)
    ids = np.empty(n, dtype=np.dtypes.StringDType())
    id_hashes = np.empty(n, dtype=np.uint64)  # for the check that no id repeats
    target_values = np.full((n, len(targets)), np.nan, dtype=np.float32)
    small = [ID, *(t for t in targets if t in present)]
    for group, picked, dest in plan:
        start = 0
        for batch in _batches(pf, path, small, row_group=group):
            m = batch.num_rows
            if picked is None:
                rows, out = None, _sub(dest, start, m)
            else:
                lo, hi = (int(i) for i in np.searchsorted(picked, [start, start + m]))
                rows, out = picked[lo:hi] - start, _sub(dest, lo, hi - lo)
            start += m
            if rows is not None and len(rows) == 0:
                continue
            ids[out] = _strings(batch.column(ID), path, rows)
            id_hashes[out] = _hashes(batch.column(ID), rows)
            for j, name in enumerate(targets):
                if name in present:
                    values = _float32(batch.column(name))
                    target_values[out, j] = values if rows is None else values[rows]
    require_unique_ids(ids, id_hashes, path)
    del id_hashes
    # Hand the allocator's cached pages back before the big matrix is filled: it keeps
    # the pages of pass 1 and of the id column otherwise, which shows in the peak.
    _release_memory()
    # Eras as one shared str object per era: 8 bytes a row (StringDType takes 16).
    era_objects = np.array(era_labels, dtype=object)[row_era]
    used = np.flatnonzero(np.bincount(row_era, minlength=len(era_labels)))
    recode = np.full(len(era_labels), -1, dtype=np.int32)
    recode[used] = np.arange(len(used), dtype=np.int32)
    era_index = recode[row_era]
    del row_era
    features = _read_features(pf, path, plan, feature_names, n)
    extra = _read_features(pf, path, plan, list(extra_names), n) if extra_names else None
    return Dataset(
        ids=ids,
        eras=era_objects,
        features=features,
        feature_names=feature_names,
        target=np.ascontiguousarray(target_values[:, 0]),
        target_name=target_name,
        aux=np.ascontiguousarray(target_values[:, 1:]),
        aux_names=aux_names,
        era_labels=[era_labels[i] for i in used],
        era_index=era_index,
        **({} if extra is None else {"extra_features": extra, "extra_names": list(extra_names)}),
    )


def _choose_rows(pf: pq.ParquetFile, path: Path, eras: Iterable[str] | None,
                 data_type: str | None, nan_filter: str | None
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pass 1, on the small columns, SMALL_BATCH_ROWS rows at a time: (era labels in era
    order, era code of each kept row in output order, output row of each file row or -1
    where the row is dropped)."""
    columns = [ERA, *([DATA_TYPE] if data_type is not None else []),
               *([nan_filter] if nan_filter else [])]
    n_rows = pf.metadata.num_rows
    era_codes = np.empty(n_rows, dtype=np.int32)  # into `seen` until ranked below
    keep = np.ones(n_rows, dtype=bool)
    seen: dict[str, int] = {}
    start = missing = 0
    for batch in _batches(pf, path, columns):
        rows = slice(start, start + batch.num_rows)
        start = rows.stop
        era = batch.column(ERA)
        missing += era.null_count
        if missing:
            continue  # counted for the message below
        if not pa.types.is_dictionary(era.type):
            era = pc.dictionary_encode(era)
        codes = [seen.setdefault(e, len(seen)) for e in _era_strings(era.dictionary).to_pylist()]
        era_codes[rows] = np.asarray(codes, dtype=np.int32)[_numpy(era.indices)]
        if data_type is not None:
            same = pc.fill_null(pc.equal(_as_strings(batch.column(DATA_TYPE)), data_type),
                                False)
            keep[rows] &= same.to_numpy(zero_copy_only=False)
        if nan_filter:
            keep[rows] &= ~np.isnan(_float32(batch.column(nan_filter)))
    if missing:
        raise NumerlabError(f"{path}: column 'era' has {missing} missing values")
    era_labels = sort_eras(seen)
    position = {era: i for i, era in enumerate(era_labels)}
    rank = np.array([position[e] for e in seen], dtype=np.int32)
    if eras is not None:
        wanted = {str(e) for e in eras}
        keep &= np.isin(era_codes, [seen[e] for e in seen if e in wanted])
    # Fast paths for what v5 files are: every row kept, already in era order.
    rows = None if keep.all() else np.flatnonzero(keep)
    del keep
    kept_codes = rank[era_codes if rows is None else era_codes[rows]]
    del era_codes
    order = None if (kept_codes[1:] >= kept_codes[:-1]).all() else np.argsort(kept_codes,
                                                                              kind="stable")
    index_type = np.int64 if n_rows >= 2**31 else np.int32
    if rows is None and order is None:
        return era_labels, kept_codes, np.arange(n_rows, dtype=index_type)
    chosen = rows if order is None else order if rows is None else rows[order]
    destination = np.full(n_rows, -1, dtype=index_type)
    destination[chosen] = np.arange(len(chosen), dtype=index_type)
    return era_labels, kept_codes if order is None else kept_codes[order], destination


def _row_group_plan(pf: pq.ParquetFile, destination: np.ndarray):
    """(row group, its kept rows or None for all, their output rows as slice or index) for
    every row group with a kept row; the others are never read."""
    start = 0
    for group in range(pf.num_row_groups):
        stop = start + pf.metadata.row_group(group).num_rows
        local = destination[start:stop]
        start = stop
        picked = np.flatnonzero(local >= 0)
        if len(picked) == 0:
            continue
        dest = local[picked]
        if dest[-1] - dest[0] == len(dest) - 1 and (np.diff(dest) == 1).all():
            dest = slice(int(dest[0]), int(dest[-1]) + 1)
        yield group, (None if len(picked) == len(local) else picked), dest


def _read_features(pf: pq.ParquetFile, path: Path, plan: list, feature_names: list[str],
                   n: int) -> np.ndarray:
    """The (n, k) int8 C-contiguous matrix, filled from bounded (row group x column slice)
    reads: each slice is decoded by Arrow and copied from Arrow's buffers into place, a
    cache-sized tile of rows at a time (no copy of the whole slice), by PUT_THREADS threads
    taking one share of the rows each."""
    features = np.empty((n, len(feature_names)), dtype=np.int8)
    widest = min(len(feature_names), max(
        (_columns_per_read(pf.metadata.row_group(group).num_rows) for group, _, _ in plan),
        default=0))
    tiles = [np.empty(TRANSPOSE_TILE_ROWS * widest, dtype=np.int8) for _ in range(PUT_THREADS)]
    with ThreadPoolExecutor(max_workers=PUT_THREADS) as pool:
        for group, picked, dest in plan:
            step = _columns_per_read(pf.metadata.row_group(group).num_rows)
            for c0 in range(0, len(feature_names), step):
                names = feature_names[c0:c0 + step]
                part = _read(pf, path, columns=names, row_group=group)
                columns = [_int8_bins(part.column(j), path, name)
                           for j, name in enumerate(names)]
                count = len(columns[0]) if picked is None else len(picked)
                share = max(1, -(-count // (PUT_THREADS * TRANSPOSE_TILE_ROWS))
                            ) * TRANSPOSE_TILE_ROWS
                puts = [pool.submit(_put_columns, features, dest, c0, columns, picked, tile,
                                    names, path, start, min(start + share, count))
                        for tile, start in zip(tiles, range(0, count, share), strict=False)]
                for put in puts:
                    put.result()  # raises what the put raised
                del part, columns, puts
    return features


def _columns_per_read(rows: int) -> int:
    """Feature columns decoded per read of a row group of `rows` rows: READ_CHUNK_CELLS
    cells, but at least MIN_READ_COLUMNS, below which filling the matrix gets slow (every
    read rewrites a cache line of every row, whatever few bytes of it it fills)."""
    return max(MIN_READ_COLUMNS, READ_CHUNK_CELLS // max(rows, 1))


def _put_columns(features: np.ndarray, dest: slice | np.ndarray, c0: int,
                 columns: list[np.ndarray], picked: np.ndarray | None, tile: np.ndarray,
                 names: list[str], path: Path, start: int, stop: int) -> None:
    """features[dest, c0:c0+len(columns)] = rows start:stop of the `picked` rows (of all
    rows if None) of `columns`, interleaved into `tile` (a flat int8 buffer) a row tile at a
    time and checked to be bins 0..FEATURE_MAX.

    The tile's rows go to the matrix as single `V<width>` items (raw bytes): one strided
    copy of `width`-byte items instead of NumPy's per-row inner loop over `width` bytes."""
    width = len(columns)
    rows_of = np.ndarray((len(features),), dtype=f"V{width}", buffer=features, offset=c0,
                         strides=(features.strides[0],))
    for r in range(start, stop, TRANSPOSE_TILE_ROWS):
        m = min(TRANSPOSE_TILE_ROWS, stop - r)
        source = slice(r, r + m) if picked is None else picked[r:r + m]
        block = tile[:m * width].reshape(m, width)
        for j, column in enumerate(columns):
            block[:, j] = column[source]
        # As uint8 a negative int8 is >= 128, so one maximum checks the range 0..4.
        if block.view(np.uint8).max() > FEATURE_MAX:
            bad = names[int(np.argmax(block.view(np.uint8).max(axis=0) > FEATURE_MAX))]
            raise NumerlabError(f"{path}: feature column {bad!r} has values outside "
                                f"0..{FEATURE_MAX}")
        rows_of[_sub(dest, r, m)] = block.view(f"V{width}")[:, 0]


def _strings(column: pa.Array, path: Path, rows: np.ndarray | None) -> np.ndarray:
    """The strings of a (small) id column, only `rows` if given, as a NumPy array that
    StringDType accepts: fixed-width bytes viewing Arrow's buffer where the ids all have
    the same length (v5's do), else an object array of str."""
    if column.null_count:
        raise NumerlabError(f"{path}: column {ID!r} has {column.null_count} missing values")
    if not pa.types.is_string(column.type):
        column = _as_strings(pa.chunked_array([column])).combine_chunks()
    values = _fixed_width_bytes(column)
    if values is None:
        values = column.to_numpy(zero_copy_only=False)
    return values if rows is None else values[rows]


def _hashes(column: pa.Array, rows: np.ndarray | None) -> np.ndarray:
    """A 64-bit hash of each id of a batch (only `rows` if given), straight from Arrow's
    buffers: what `require_unique_ids` sorts instead of the ids themselves."""
    import polars as pl

    hashes = pl.from_arrow(_as_strings(column)).hash(seed=0).to_numpy()
    return hashes if rows is None else hashes[rows]


def require_unique_ids(ids: np.ndarray, hashes: np.ndarray, path: Path | str) -> None:
    """NumerlabError naming `path` and a repeated id unless every id of `ids` is unique.
    Sorting the 64-bit `hashes` of the ids is the cheap pass; only ids whose hash repeats are
    compared as strings (a hash collision of two different ids is not a repeat)."""
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(repeated):
        return
    counts = Counter(str(i) for i in ids[np.isin(hashes, repeated)].tolist())
    twice = [i for i, count in counts.items() if count > 1]
    if twice:
        raise_repeated_ids(path, twice, counts[twice[0]])


def raise_repeated_ids(path: Path | str, repeated: Sequence[str], times: int | None = None
                       ) -> None:
    """The one line for a file whose ids repeat: the file, an example id, how many repeat."""
    how_often = f"{times} times" if times else "more than once"
    more = f" ({len(repeated)} ids repeat)" if len(repeated) > 1 else ""
    raise NumerlabError(f"{path}: id {str(repeated[0])!r} appears {how_often}{more}; "
                        f"every row id must be unique (a damaged or concatenated file?)")


def _repeated_ids(ids: pa.Array | pa.ChunkedArray) -> list[str]:
    """The ids that appear more than once in an Arrow column of a small file (meta model,
    benchmarks): empty when all are unique."""
    import polars as pl

    series = pl.from_arrow(_as_strings(ids))
    if not isinstance(series, pl.Series):
        series = series.to_series()
    if series.n_unique() == len(series):
        return []
    return series.filter(series.is_duplicated()).unique(maintain_order=True).to_list()


def _fixed_width_bytes(strings: pa.StringArray) -> np.ndarray | None:
    """`strings` as an `S<width>` view of Arrow's buffer when all have the same nonzero
    length and hold no NUL byte (the bytes dtype would strip trailing ones); else None.
    Casting it to StringDType decodes UTF-8 without a Python object per string."""
    n = len(strings)
    _, offsets_buffer, data = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=n + 1, offset=4 * strings.offset)
    width = int(offsets[1] - offsets[0]) if n else 0
    if width == 0 or offsets[-1] - offsets[0] != width * n or (np.diff(offsets) != width).any():
        return None
    raw = np.frombuffer(data, np.uint8, count=width * n, offset=int(offsets[0]))
    return raw.view(f"S{width}") if raw.all() else None


def _sub(dest: slice | np.ndarray, start: int, count: int) -> slice | np.ndarray:
    """Rows start:start+count of an output-row selection."""
    if isinstance(dest, slice):
        return slice(dest.start + start, dest.start + start + count)
    return dest[start:start + count]


def _release_memory() -> None:
    """Hand the allocators' cached free pages back to the OS: Arrow's default pool (what
    compute functions allocate) and, with glibc, malloc's arenas (decoded columns and
    NumPy temporaries: freed blocks below the top of a heap stay resident otherwise)."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None on other C libraries."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


# Where decoded columns go: see `_open`.
_READ_POOL = pa.system_memory_pool()


# --- arrow helpers ----------------------------------------------------------------------

def _open(path: str | Path) -> pq.ParquetFile:
    path = Path(path)
    if not path.is_file():
        raise NumerlabError(f"missing data file {path}")
    try:
        # No pre-buffering: it keeps every column chunk read so far of the current row
        # group cached (compressed) until the next one, and only pays off on remote stores.
        pf = pq.ParquetFile(path, pre_buffer=False)
        # Decoded columns go to the C allocator, not to Arrow's default mimalloc pool:
        # mimalloc keeps the (often huge-page backed) pages of every thread that decoded
        # something after they are freed, about 0.2x the int8 matrix of benchmarks/load.py
        # in all; malloc returns big blocks at once and the rest on malloc_trim (see
        # `_release_memory`). ParquetFile takes no pool, its reader does; the footer
        # already parsed is shared.
        # Eras come as dictionary indices, as the file stores them: no per-row string.
        eras_coded = [ERA] if ERA in pf.schema_arrow.names else None
        reader = pq.ParquetReader(memory_pool=_READ_POOL)
        reader.open(str(path), pre_buffer=False, metadata=pf.metadata,
                    read_dictionary=eras_coded, arrow_extensions_enabled=True)
        pf.reader.close()
        pf.reader = reader
        return pf
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read parquet file {path}: {message_line(exc)}") from None


def _read(pf: pq.ParquetFile, path: Path, columns: list[str], row_group: int | None = None
          ) -> pa.Table:
    try:
        if row_group is None:
            return pf.read(columns=columns)
        return pf.read_row_group(row_group, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read parquet file {path}: {message_line(exc)}") from None


def _batches(pf: pq.ParquetFile, path: Path, columns: list[str],
             row_group: int | None = None) -> Iterator[pa.RecordBatch]:
    """`columns` of the file (or of one row group) in batches of SMALL_BATCH_ROWS rows, so
    that the small columns never sit in memory whole as Arrow data."""
    groups = None if row_group is None else [row_group]
    try:
        yield from pf.iter_batches(batch_size=SMALL_BATCH_ROWS, row_groups=groups,
                                   columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read parquet file {path}: {message_line(exc)}") from None


def _numpy(values: pa.Array) -> np.ndarray:
    """A null-free primitive Arrow array as NumPy (zero-copy)."""
    return values.to_numpy(zero_copy_only=True)


def _require_columns(schema: pa.Schema, path: str | Path, columns: Iterable[str]) -> None:
    present = set(schema.names)
    missing = [c for c in dict.fromkeys(columns) if c not in present]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise NumerlabError(f"{path} has no column {missing[0]!r}{more}")


def _as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A (dictionary, large, numeric...) column as plain strings."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    return column if column.type == pa.string() else pc.cast(column, pa.string())


def _era_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Era labels as strings; integer eras are zero-padded like v5's ("575" -> "0575")."""
    if pa.types.is_integer(column.type):
        return pc.utf8_lpad(pc.cast(column, pa.string()), 4, "0")
    return _as_strings(column)


def _float32(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Float32 values, NaN where null."""
    values = pc.cast(column, pa.float32())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count:
        values = pc.fill_null(values, np.float32("nan"))
    return values.to_numpy(zero_copy_only=False)


def _int8_bins(column: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    """A feature column as int8 without nulls; the 0..4 range is checked by the caller
    (other integer types and whole-number floats are accepted and checked here)."""
    if column.null_count:
        raise NumerlabError(f"{path}: feature column {name!r} has {column.null_count} "
                            f"missing values")
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    array = values.to_numpy(zero_copy_only=False)
    if array.dtype == np.int8:
        return array
    valid = (array >= 0) & (array <= FEATURE_MAX)
    if array.dtype.kind == "f":
        valid &= array == np.round(array)
    if not valid.all():
        raise NumerlabError(f"{path}: feature column {name!r} has values that are not "
                            f"int8 bins 0..{FEATURE_MAX} (e.g. {array[~valid][0]!r})")
    return array.astype(np.int8)


# --- messages and settings -------------------------------------------------------------

def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _some(known: list[str], name: object, count: int = 6) -> str:
    """A few of `known`, the ones closest to `name` first."""
    close = difflib.get_close_matches(str(name), known, n=count, cutoff=0.5)
    shown = close + [k for k in known if k not in close][: count - len(close)]
    rest = f", ... ({len(known)} in all)" if len(known) > len(shown) else ""
    return ", ".join(shown) + rest
