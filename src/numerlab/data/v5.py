"""Numerai v5 local layout: check it, resolve names against features.json, load splits.

A data dir holds `train.parquet`, `validation.parquet` (`data_type` validation | test),
`live.parquet`, `features.json` (`feature_sets`, `targets`) and optionally
`meta_model.parquet`. Each parquet has an `id` column (pandas writes its `id` index as one),
an `era` string such as "0575" ("X" in live) and int8 `feature_*` columns.

Loading never builds a float or pandas copy of the feature matrix: a first pass reads the
small columns (`era`, `data_type`, the target) to choose rows and their era order, then the
feature columns are read one row group and a bounded slice of columns at a time straight
into one preallocated C-contiguous int8 matrix. Row groups without a chosen row are never
decoded, so `era_stride` skips them on era-sorted files.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError

if TYPE_CHECKING:
    import polars as pl

TRAIN_FILE = "train.parquet"
VALIDATION_FILE = "validation.parquet"
LIVE_FILE = "live.parquet"
FEATURES_FILE = "features.json"
META_MODEL_FILE = "meta_model.parquet"
REQUIRED_FILES = (TRAIN_FILE, VALIDATION_FILE, LIVE_FILE, FEATURES_FILE)

ID = "id"
ERA = "era"
DATA_TYPE = "data_type"
META_MODEL_COLUMN = "numerai_meta_model"
FEATURE_MAX = 4  # features are bins 0..4
SPLIT_NAMES = ("train", "validation", "live")

# int8 cells decoded per read: bounds the transient memory next to the feature matrix.
READ_CHUNK_CELLS = 4 * 2**20
TRANSPOSE_TILE_ROWS = 32_768


# --- layout -----------------------------------------------------------------------------

def prepare(data_cfg: Mapping[str, Any]) -> Path:
    """Make `data_cfg.dir` ready to load and return it.

    synthetic: generate it (again) unless its manifest matches the generator params.
    v5: check the required files are there (downloading is not done here).
    """
    source = data_cfg.get("source")
    data_dir = Path(str(data_cfg["dir"])).expanduser()
    if source == "synthetic":
        from numerlab.data import synthetic

        params = dict(data_cfg.get("synthetic") or {})
        if "seed" not in params:
            raise NumerlabError("data.synthetic.seed is missing")
        seed = params.pop("seed")
        return synthetic.ensure(data_dir, params, seed)
    if source == "v5":
        check_layout(data_dir)
        return data_dir
    raise NumerlabError(f"data.source must be 'synthetic' or 'v5', got {source!r}")


def check_layout(data_dir: Path) -> None:
    """NumerlabError naming the first missing required file of a v5 data dir."""
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            raise NumerlabError(f"missing data file {data_dir / name} (Numerai v5 layout needs "
                                f"{', '.join(REQUIRED_FILES)})")


def read_features_json(data_dir: str | Path) -> dict:
    """features.json of `data_dir`: {"feature_sets": {name: [columns]}, "targets": [names]}."""
    path = Path(data_dir) / FEATURES_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise NumerlabError(f"missing data file {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NumerlabError(f"cannot read {path}: {_first_line(exc)}") from None
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


def load_splits(data_cfg: Mapping[str, Any], features_cfg: Mapping[str, Any],
                target_cfg: Mapping[str, Any],
                splits: Sequence[str] = SPLIT_NAMES) -> Splits:
    """Load the requested splits of `data_cfg.dir` with the configured features and targets.

    train:      every `era_stride`-th era of train.parquet (the first era is kept), rows with
                a NaN target dropped.
    validation: rows of validation.parquet with data_type "validation" whose era is more than
                `embargo_eras` after the last *kept* train era (dropped train eras leak
                nothing), rows with a NaN target dropped because they cannot be scored.
    live:       every row of live.parquet; targets NaN (absent target columns are allowed).
    All splits are sorted by era (stable).
    """
    unknown = [s for s in splits if s not in SPLIT_NAMES]
    if unknown:
        raise NumerlabError(f"unknown split {unknown[0]!r} (known: {', '.join(SPLIT_NAMES)})")
    data_dir = Path(str(data_cfg["dir"])).expanduser()
    era_stride = _int_setting(data_cfg, "era_stride", 1, minimum=1)
    embargo = _int_setting(data_cfg, "embargo_eras", 0, minimum=0)
    meta = read_features_json(data_dir)
    feature_names = resolve_features(meta, features_cfg)
    target_name, aux_names = resolve_targets(meta, target_cfg)
    columns = {"feature_names": feature_names, "target_name": target_name,
               "aux_names": aux_names}

    train = validation = live = None
    if "train" in splits or "validation" in splits:
        train_eras = split_eras(data_dir / TRAIN_FILE)[::era_stride]
        if not train_eras:
            raise NumerlabError(f"{data_dir / TRAIN_FILE} has no rows")
        if "train" in splits:
            train = load_split(data_dir / TRAIN_FILE, **columns, eras=train_eras,
                               drop_nan_target=True)
            _require_rows(train, data_dir / TRAIN_FILE)
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
        validation = load_split(path, **columns, eras=kept, data_type=data_type,
                                drop_nan_target=True)
        _require_rows(validation, path)
    if "live" in splits:
        live = load_split(data_dir / LIVE_FILE, **columns, require_targets=False)
    return Splits(train=train, validation=validation, live=live,
                  meta_model=read_meta_model(data_dir / META_MODEL_FILE),
                  feature_names=feature_names, target_name=target_name,
                  aux_names=aux_names, data_dir=data_dir)


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
    arrays = [_as_strings(table[ID]), *([_era_strings(table[ERA])] if ERA in columns else []),
              pc.cast(table[META_MODEL_COLUMN], pa.float64())]
    return pl.from_arrow(pa.table(arrays, names=columns))


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
               require_targets: bool = True) -> Dataset:
    """Rows of one v5-layout parquet file as a Dataset, sorted by era (stable).

    eras:            keep only rows of these eras (None: all)
    data_type:       keep only rows whose `data_type` equals it (None: all)
    drop_nan_target: drop rows whose `target_name` is NaN
    require_targets: if False, absent target/aux columns read as NaN (live.parquet)
    Only `id`, `era`, the features, the targets (and `data_type` when filtering) are read.
    """
    path = Path(path)
    with _open(path) as pf:
        return _load(pf, path, list(feature_names), target_name, list(aux_names), eras,
                     data_type, drop_nan_target, require_targets)


def _load(pf: pq.ParquetFile, path: Path, feature_names: list[str], target_name: str,
          aux_names: list[str], eras: Iterable[str] | None, data_type: str | None,
          drop_nan_target: bool, require_targets: bool) -> Dataset:
    schema = pf.schema_arrow  # a property that rebuilds the schema on every access
    targets = [target_name, *aux_names]
    _require_columns(schema, path, [ID, ERA, *feature_names,
                                    *([DATA_TYPE] if data_type is not None else []),
                                    *(targets if require_targets else [])])
    for name in feature_names:
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
    ids = np.empty(n, dtype=object)
    target_values = np.full((n, len(targets)), np.nan, dtype=np.float32)
    small = [ID, *(t for t in targets if t in present)]
    for group, picked, dest in plan:
        part = _read(pf, path, columns=small, row_group=group)
        part = part if picked is None else part.take(picked)
        # to_pylist: Arrow's to_numpy makes string objects about twice as large.
        ids[dest] = _as_strings(part[ID]).to_pylist()
        for j, name in enumerate(targets):
            if name in present:
                target_values[dest, j] = _float32(part[name])
        del part
    # Hand the allocator's cached pages back before the big matrix is filled: it keeps
    # the pages of pass 1 and of the id strings otherwise, which shows in the peak.
    pa.default_memory_pool().release_unused()
    return Dataset(
        ids=ids,
        eras=np.array(era_labels, dtype=object)[row_era],
        features=_read_features(pf, path, plan, feature_names, n),
        feature_names=feature_names,
        target=np.ascontiguousarray(target_values[:, 0]),
        target_name=target_name,
        aux=np.ascontiguousarray(target_values[:, 1:]),
        aux_names=aux_names,
    )


def _choose_rows(pf: pq.ParquetFile, path: Path, eras: Iterable[str] | None,
                 data_type: str | None, nan_filter: str | None
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pass 1, on the small columns: (era labels in era order, era code of each kept row in
    output order, output row of each file row or -1 where the row is dropped)."""
    columns = [ERA, *([DATA_TYPE] if data_type is not None else []),
               *([nan_filter] if nan_filter else [])]
    table = _read(pf, path, columns=columns)
    era_labels, era_codes = _era_codes(table[ERA], path)
    keep = np.ones(table.num_rows, dtype=bool)
    if eras is not None:
        wanted = {str(e) for e in eras}
        keep &= np.isin(era_codes, [i for i, e in enumerate(era_labels) if e in wanted])
    if data_type is not None:
        same = pc.fill_null(pc.equal(_as_strings(table[DATA_TYPE]), data_type), False)
        keep &= same.combine_chunks().to_numpy(zero_copy_only=False)
    if nan_filter:
        keep &= ~np.isnan(_float32(table[nan_filter]))
    rows = np.flatnonzero(keep)
    order = np.argsort(era_codes[rows], kind="stable")
    destination = np.full(len(keep), -1, dtype=np.int64 if len(keep) >= 2**31 else np.int32)
    destination[rows[order]] = np.arange(len(rows))
    return era_labels, era_codes[rows[order]], destination


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
    reads: each slice is decoded by Arrow, checked, and transposed into place."""
    features = np.empty((n, len(feature_names)), dtype=np.int8)
    for group, picked, dest in plan:
        step = max(1, READ_CHUNK_CELLS // pf.metadata.row_group(group).num_rows)
        for c0 in range(0, len(feature_names), step):
            names = feature_names[c0:c0 + step]
            part = _read(pf, path, columns=names, row_group=group)
            block = np.empty((len(names), part.num_rows if picked is None else len(picked)),
                             dtype=np.int8)
            for j, name in enumerate(names):
                column = _int8_bins(part[name], path, name)
                block[j] = column if picked is None else column[picked]
            del part
            # As uint8 a negative int8 is >= 128, so one maximum checks the range 0..4.
            if block.view(np.uint8).max() > FEATURE_MAX:
                bad = names[int(np.argmax(block.view(np.uint8).max(axis=1) > FEATURE_MAX))]
                raise NumerlabError(f"{path}: feature column {bad!r} has values outside "
                                    f"0..{FEATURE_MAX}")
            _put_transposed(features, dest, c0, block)
    return features


def _put_transposed(features: np.ndarray, dest: slice | np.ndarray, c0: int,
                    block: np.ndarray) -> None:
    """features[dest, c0:c0+len(block)] = block.T, in row tiles that stay in cache."""
    columns = slice(c0, c0 + len(block))
    tile = TRANSPOSE_TILE_ROWS
    for r in range(0, block.shape[1], tile):
        if isinstance(dest, slice):
            rows = slice(dest.start + r, min(dest.stop, dest.start + r + tile))
        else:
            rows = dest[r:r + tile]
        features[rows, columns] = block[:, r:r + tile].T


# --- eras -------------------------------------------------------------------------------

def era_number(era: str, source: str = "") -> int:
    """The number of an era label ("0575" -> 575, "era12" -> 12), for embargo arithmetic."""
    match = re.search(r"\d+$", str(era))
    if match is None:
        where = f" in {source}" if source else ""
        raise NumerlabError(f"era {era!r}{where} has no era number")
    return int(match.group())


def sort_eras(eras: Iterable[str]) -> list[str]:
    """Era labels in time order: numbered eras by number, others ("X") after them."""
    def key(era: str) -> tuple[int, int, str]:
        match = re.search(r"\d+$", era)
        return (0, int(match.group()), era) if match else (1, 0, era)

    return sorted({str(e) for e in eras}, key=key)


def _era_codes(column: pa.ChunkedArray, path: Path) -> tuple[list[str], np.ndarray]:
    """(era labels in era order, (n,) int32 code of each row into them)."""
    if column.null_count:
        raise NumerlabError(f"{path}: column 'era' has {column.null_count} missing values")
    encoded = pc.dictionary_encode(_era_strings(column)).combine_chunks()
    labels = encoded.dictionary.to_pylist()
    ordered = sort_eras(labels)
    position = {era: i for i, era in enumerate(ordered)}
    rank = np.array([position[e] for e in labels], dtype=np.int32)
    return ordered, rank[encoded.indices.to_numpy(zero_copy_only=False)]


# --- arrow helpers ----------------------------------------------------------------------

def _open(path: str | Path) -> pq.ParquetFile:
    path = Path(path)
    if not path.is_file():
        raise NumerlabError(f"missing data file {path}")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read parquet file {path}: {_first_line(exc)}") from None


def _read(pf: pq.ParquetFile, path: Path, columns: list[str], row_group: int | None = None
          ) -> pa.Table:
    try:
        if row_group is None:
            return pf.read(columns=columns)
        return pf.read_row_group(row_group, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read parquet file {path}: {_first_line(exc)}") from None


def _require_columns(schema: pa.Schema, path: str | Path, columns: Iterable[str]) -> None:
    present = set(schema.names)
    missing = [c for c in dict.fromkeys(columns) if c not in present]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise NumerlabError(f"{path} has no column {missing[0]!r}{more}")


def _as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A (dictionary, large, numeric...) column as plain strings."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    return column if column.type == pa.string() else pc.cast(column, pa.string())


def _era_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Era labels as strings; integer eras are zero-padded like v5's ("575" -> "0575")."""
    if pa.types.is_integer(column.type):
        return pc.utf8_lpad(pc.cast(column, pa.string()), 4, "0")
    return _as_strings(column)


def _float32(column: pa.ChunkedArray) -> np.ndarray:
    """Float32 values, NaN where null."""
    values = pc.cast(column, pa.float32()).combine_chunks()
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

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _some(known: list[str], name: object, count: int = 6) -> str:
    """A few of `known`, the ones closest to `name` first."""
    close = difflib.get_close_matches(str(name), known, n=count, cutoff=0.5)
    shown = close + [k for k in known if k not in close][: count - len(close)]
    rest = f", ... ({len(known)} in all)" if len(known) > len(shown) else ""
    return ", ".join(shown) + rest


def _int_setting(cfg: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = cfg.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NumerlabError(f"data.{key} must be an integer >= {minimum}, got {value!r}")
    return value
