"""The one checker of config values: each setting that needs no data is checked here, once,
before anything is loaded or fitted, and a bad one is a single line naming the key, the value
and what is allowed.

    integer("cv.n_splits", 7, minimum=2)            -> 7
    integer("seed", -1, minimum=0)                  -> NumerlabError "seed=-1 must be ..."
    boolean("tournament.submit", "yes")             -> NumerlabError
    choice("cv.scheme", "rolling", ("expanding", "rolling"))
    keys("fit", {"holdout": 8}, ("holdout_eras",))  -> NumerlabError "fit.holdout is not ..."
    required("payout", {"clip": 0.05}, ("corr_mult", "clip"))  -> "payout.corr_mult is missing"

Defaults never live here: they live in conf/.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from numerlab.errors import NumerlabError, message_line


def integer(key: str, value: Any, minimum: int | None = None, maximum: int | None = None,
            optional: bool = False) -> int | None:
    """`value` as an int within [minimum, maximum] (bools are not integers); None passes
    when `optional`."""
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, Integral)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bounds = _bounds(minimum, maximum)
        raise NumerlabError(f"{key}={value!r} must be {'null or ' if optional else ''}"
                            f"an integer{bounds}")
    return int(value)


def number(key: str, value: Any, minimum: float | None = None, maximum: float | None = None,
           optional: bool = False, above: float | None = None) -> float | None:
    """`value` as a finite float within [minimum, maximum] (and > `above`); None passes when
    `optional` (bools, NaN and infinities are not numbers here)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not (
            -math.inf < value < math.inf) or (
            minimum is not None and value < minimum) or (
            maximum is not None and value > maximum) or (above is not None and value <= above):
        bounds = _bounds(minimum, maximum, above)
        raise NumerlabError(f"{key}={value!r} must be {'null or ' if optional else ''}"
                            f"a number{bounds}")
    return float(value)


def boolean(key: str, value: Any) -> bool:
    """`value` as a bool: only true or false."""
    if not isinstance(value, bool):
        raise NumerlabError(f"{key}={value!r} must be true or false")
    return value


def text(key: str, value: Any, optional: bool = False, what: str = "a non-empty string"
         ) -> str | None:
    """`value` as a non-empty string; None passes when `optional`."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise NumerlabError(f"{key}={value!r} must be {'null or ' if optional else ''}{what}")
    return value


def choice(key: str, value: Any, allowed: Collection[Any]) -> Any:
    """`value`, one of `allowed`."""
    if value not in allowed:
        raise NumerlabError(f"{key}={value!r} is unknown (allowed: "
                            f"{', '.join(map(str, allowed))})")
    return value


def keys(group: str, values: Mapping[str, Any] | None, known: Iterable[str]) -> None:
    """Refuse a key of `values` (the config group `group`) that is not among `known`, naming
    the closest known key: `+fit.holdout=8` must not run with no holdout."""
    known = list(known)
    for key in values or {}:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {group}.{close[0]}? " if close else ""
            raise NumerlabError(f"{group}.{key} is not a setting of {group} ({hint}settings: "
                                f"{', '.join(known) or 'none'})")


def required(group: str, values: Mapping[str, Any], needed: Iterable[str]) -> None:
    """Refuse `values` (the config group `group`) lacking one of `needed`: conf/ sets each, so
    a missing one is a group composed by hand or a key deleted (`~payout.clip`)."""
    needed = list(needed)
    for key in needed:
        if key not in values:
            raise NumerlabError(f"{group}.{key} is missing (settings: {', '.join(needed)})")


def _bounds(minimum: float | None, maximum: float | None, above: float | None = None) -> str:
    if minimum is not None and maximum is not None and above is None:
        return f" within [{minimum}, {maximum}]"
    parts = [f"{sign} {bound}" for sign, bound in
             ((">", above), (">=", minimum), ("<=", maximum)) if bound is not None]
    return " " + " and ".join(parts) if parts else ""


def secret_file_text(key: str, path: str | Path, elsewhere: str) -> str:
    """The text of the file config key `key` names, a file holding secrets (API keys,
    webhook tokens): it must exist and live outside any git work tree, so that it cannot be
    committed (`elsewhere`: where to put it instead, e.g. ~/.numerai/keys.env)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NumerlabError(f"{key} {path} does not exist")
    repo = next((p for p in path.resolve().parents if (p / ".git").exists()), None)
    if repo is not None:
        raise NumerlabError(f"{key} {path} is inside the git repository {repo}; move it "
                            f"outside (e.g. {elsewhere}): it holds secrets and must never "
                            f"be committed")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NumerlabError(f"cannot read {key} {path}: {message_line(exc)}") from None
