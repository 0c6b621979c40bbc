"""A Numerai Classic submission: check it as Numerai does, write it atomically.

A submission is a CSV with the header `id,prediction` and one row per live id:
- every live id exactly once, and no other id;
- predictions are numbers in [0, 1], none NaN;
- not constant: Numerai rejects a submission whose standard deviation is (close to) zero,
  i.e. std <= CONSTANT_STD (numerai-tools: `np.isclose(0, std)`, absolute tolerance 1e-8).
These are the checks of numerai-tools' `validate_submission_numerai`, stricter where the
tournament is: numerai-tools also accepts a `probability` column and ignores extra ids.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numerlab.artifacts import atomic_file
from numerlab.errors import NumerlabError, message_line

HEADER = ("id", "prediction")
CONSTANT_STD = 1e-8  # sample std at or below this counts as constant (numerai-tools' atol)
EXAMPLES = 3  # ids quoted in a message


def validate_submission(frame_or_csv: Any, live_ids: Sequence[str] | np.ndarray | Any
                        ) -> None:
    """NumerlabError (one line) unless `frame_or_csv` is a valid submission for `live_ids`.

    frame_or_csv: a path to a CSV file, or a pandas / polars DataFrame with exactly the
                  columns `id`, `prediction` (in that order).
    live_ids:     the ids of live.parquet (any sequence, array or Series of strings)."""
    where, ids, predictions = _read(frame_or_csv)
    live = _strings(live_ids, "live ids")
    if not len(live):
        raise NumerlabError("the live data has no rows: there is nothing to submit")
    _check_ids(where, ids, live)
    _check_values(where, ids, predictions)


def write_submission(ids: Sequence[str] | np.ndarray | Any,
                     predictions: Sequence[float] | np.ndarray | Any,
                     path: str | Path) -> Path:
    """Write `id,prediction` rows to `path` atomically: into a temporary file in the same
    directory, renamed over `path` only once complete (a reader never sees half a file,
    and a failed write leaves an existing `path` as it was). Floats keep full precision.
    No rows, or an id twice, is an error and nothing is written: Numerai would refuse it."""
    path = Path(path)
    id_values = _strings(ids, "ids")
    values = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if len(id_values) != len(values):
        raise NumerlabError(f"cannot write {path}: {len(id_values)} ids but "
                            f"{len(values)} predictions")
    if not len(id_values):
        raise NumerlabError(f"cannot write {path}: no live rows to predict")
    unique, counts = np.unique(id_values, return_counts=True)
    if (counts > 1).any():
        raise NumerlabError(f"cannot write {path}: {int((counts > 1).sum())} ids appear more "
                            f"than once (e.g. {_examples(unique[counts > 1])})")
    with atomic_file(path) as out:
        out.write(",".join(HEADER) + "\n")
        # repr of a Python float is the shortest text that reads back to the same value
        out.writelines(f"{i},{float(v)!r}\n" for i, v in zip(id_values, values, strict=True))
    return path


# --- reading ----------------------------------------------------------------------------

def _read(frame_or_csv: Any) -> tuple[str, np.ndarray, np.ndarray]:
    """(name for messages, ids as str array, predictions as float64 array)."""
    if isinstance(frame_or_csv, (str, os.PathLike)):
        return _read_csv(Path(frame_or_csv))
    if not hasattr(frame_or_csv, "columns"):
        raise NumerlabError(f"a submission is a CSV path or a DataFrame, got "
                            f"{type(frame_or_csv).__name__}")
    where = "submission"
    columns = [str(c) for c in frame_or_csv.columns]
    index_name = getattr(getattr(frame_or_csv, "index", None), "name", None)
    if index_name == "id" and columns == ["prediction"]:
        raise NumerlabError(f"{where}: 'id' is the index of the DataFrame; it must be a "
                            f"column (reset_index() first)")
    _check_header(where, columns)
    ids = _column(frame_or_csv, "id")
    if _has_missing(ids):
        raise NumerlabError(f"{where}: column 'id' has missing values")
    return where, _strings(ids, "submission ids"), _floats(where, _column(frame_or_csv,
                                                                          "prediction"))


def _read_csv(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    import polars as pl

    if not path.is_file():
        raise NumerlabError(f"submission file {path} does not exist")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            first = handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise NumerlabError(f"cannot read submission {path}: {message_line(exc)}") from None
    _check_header(str(path), first.split(","))
    try:
        frame = pl.read_csv(path, schema={"id": pl.String, "prediction": pl.String})
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot read submission {path}: {message_line(exc)}") from None
    if frame["id"].null_count():
        raise NumerlabError(f"{path}: column 'id' has {frame['id'].null_count()} empty values")
    return str(path), frame["id"].to_numpy().astype(str), _floats(str(path),
                                                                   frame["prediction"])


def _check_header(where: str, columns: list[str]) -> None:
    if tuple(columns) != HEADER:
        raise NumerlabError(f"{where}: header must be exactly 'id,prediction', got "
                            f"{','.join(columns)!r}")


def _column(frame: Any, name: str) -> Any:
    column = frame[name]
    return column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)


def _has_missing(values: np.ndarray) -> bool:
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    if values.dtype.kind == "O":
        return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
    return False


def _strings(values: Any, what: str) -> np.ndarray:
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    array = np.asarray(array).reshape(-1)
    if _has_missing(array):
        raise NumerlabError(f"{what} contain missing values")
    return array.astype(str)


def _floats(where: str, column: Any) -> np.ndarray:
    """Predictions as float64; empty cells become NaN; text that is no number is an error."""
    import polars as pl

    series = column if isinstance(column, pl.Series) else pl.Series(np.asarray(column))
    if series.dtype == pl.String:
        parsed = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = series.is_not_null() & (series.str.strip_chars() != "") & parsed.is_null()
        if bad.any():
            raise NumerlabError(f"{where}: prediction {series.filter(bad)[0]!r} is not a "
                                f"number")
        series = parsed
    elif not series.dtype.is_numeric():
        raise NumerlabError(f"{where}: column 'prediction' must hold numbers, got "
                            f"{series.dtype}")
    return series.cast(pl.Float64).fill_null(float("nan")).to_numpy()


# --- checks -----------------------------------------------------------------------------

def _examples(values: np.ndarray) -> str:
    shown = ", ".join(repr(str(v)) for v in values[:EXAMPLES])
    return shown + (", ..." if len(values) > EXAMPLES else "")


def _check_ids(where: str, ids: np.ndarray, live: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    repeated = unique[counts > 1]
    if len(repeated):
        raise NumerlabError(f"{where}: {len(repeated)} ids appear more than once (e.g. "
                            f"{_examples(repeated)}); each live id must appear exactly once")
    extra = unique[~np.isin(unique, live)]
    if len(extra):
        raise NumerlabError(f"{where}: {len(extra)} ids are not live ids (e.g. "
                            f"{_examples(extra)}); predict live.parquet of the current round")
    missing = np.setdiff1d(np.unique(live), unique)
    if len(missing):
        raise NumerlabError(f"{where}: {len(missing)} of {len(np.unique(live))} live ids are "
                            f"missing (e.g. {_examples(missing)})")


def _check_values(where: str, ids: np.ndarray, predictions: np.ndarray) -> None:
    nan = np.isnan(predictions)
    if nan.any():
        raise NumerlabError(f"{where}: {int(nan.sum())} predictions are NaN or empty (e.g. "
                            f"id {_examples(ids[nan])})")
    outside = (predictions < 0) | (predictions > 1)
    if outside.any():
        first = int(np.argmax(outside))
        raise NumerlabError(f"{where}: {int(outside.sum())} predictions are outside [0, 1] "
                            f"(e.g. {float(predictions[first])!r} for id {str(ids[first])!r})")
    std = float(np.std(predictions, ddof=1)) if len(predictions) > 1 else 0.0
    if not std > CONSTANT_STD:
        raise NumerlabError(f"{where}: predictions are constant (std {std:.3g}); Numerai "
                            f"rejects a submission without variation")
