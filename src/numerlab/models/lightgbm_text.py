"""A check of LightGBM's text model format before LightGBM reads it.

LightGBM trusts its model text: a truncated or garbled file makes its loader read past the
buffer (segmentation fault), abort the process from a parallel region (`terminate called
without an active exception`, exit 134) or loop, never raising an error Python could catch.
So the text is checked here first, as LightGBM's `GBDT::LoadModelFromString` reads it: the
header's keys, `tree_sizes` (the byte length of each `Tree=<i>` block, which LightGBM uses
to cut the text), each tree's arrays (lengths from `num_leaves`, numbers, child and feature
indices in range), then `end of trees`, the parameters and the `pandas_categorical` line
the Python package appends.
"""

from __future__ import annotations

import functools
import re

HEADER_KEYS = ("version", "num_class", "num_tree_per_iteration", "label_index",
               "max_feature_idx", "objective", "feature_names", "feature_infos", "tree_sizes")
# per tree: the arrays over internal nodes (num_leaves - 1) and over leaves (num_leaves)
NODE_ARRAYS = ("split_feature", "split_gain", "threshold", "decision_type", "left_child",
               "right_child", "internal_value", "internal_weight", "internal_count")
LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")
TREE_SCALARS = ("num_leaves", "num_cat", "is_linear", "shrinkage")
OPTIONAL_TREE_KEYS = ("cat_boundaries", "cat_threshold", "leaf_const", "num_features",
                      "leaf_features", "leaf_coeff")
INTEGER_ARRAYS = ("split_feature", "decision_type", "left_child", "right_child", "leaf_count",
                  "internal_count", "num_leaves", "num_cat", "is_linear", "cat_boundaries",
                  "cat_threshold", "num_features", "leaf_features")
# the numbers LightGBM's parser takes (it aborts on others, e.g. ".5")
FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan)", re.IGNORECASE)
INTEGER = re.compile(r"-?\d+")
# LightGBM's objective names (an unknown one crashes its loader), and the `name:value` words
# its objectives write after the name
OBJECTIVES = ("regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape",
              "gamma", "tweedie", "binary", "multiclass", "multiclassova", "cross_entropy",
              "cross_entropy_lambda", "lambdarank", "rank_xendcg", "custom")
OBJECTIVE_WORD = re.compile(r"sqrt|[a-z_]+:" + FLOAT.pattern, re.IGNORECASE)
PARAMETER_LINE = re.compile(r"\[[a-z0-9_]+: [^\]\n]*\]")
LINEAR_GROUPED = ("leaf_features", "leaf_coeff")
END_OF_TREES = "end of trees"
END_OF_PARAMETERS = "end of parameters"
PANDAS_LINE = "pandas_categorical:"


class ModelTextError(ValueError):
    """What is wrong with a LightGBM model text, in a few words."""


def check_model_text(text: str, parameter_kinds: dict[str, type] | None = None) -> None:
    """Raise ModelTextError unless `text` is a whole LightGBM model in the layout
    `Booster.save_model` writes (numerlab's regression boosters; linear and categorical
    trees included). `parameter_kinds` (LightGBM's parameter name -> Python type of its
    value, `lightgbm_parameter_kinds`) checks the numeric parameters' values too."""
    if not text.startswith("tree\n"):
        raise ModelTextError("does not start with LightGBM's 'tree' line")
    header_end = text.find("\n\n")
    if header_end < 0:
        raise ModelTextError("no blank line after the header")
    header = _key_values(text[len("tree\n"):header_end].split("\n"), "header")
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ModelTextError(f"header has no {missing[0]}")
    n_features = _integer(header, "max_feature_idx", 0) + 1
    per_iteration = _integer(header, "num_tree_per_iteration", 1)
    _integer(header, "num_class", 1)
    objective = header["objective"].split(" ")
    if objective[0] not in OBJECTIVES or not all(OBJECTIVE_WORD.fullmatch(word)
                                                 for word in objective[1:]):
        raise ModelTextError(f"header objective={header['objective'][:40]!r} is not "
                             f"LightGBM's")
    for key in ("feature_names", "feature_infos"):
        if len(header[key].split()) != n_features:
            raise ModelTextError(f"header {key} does not list max_feature_idx+1 = "
                                 f"{n_features} features")
    sizes = [_whole(token, "tree_sizes") for token in header["tree_sizes"].split()]
    if len(sizes) % per_iteration:
        raise ModelTextError(f"{len(sizes)} trees is not a multiple of "
                             f"num_tree_per_iteration={per_iteration}")
    offset = header_end + 2
    for index, size in enumerate(sizes):
        block = text[offset:offset + size]
        if size < 1 or len(block) != size:
            raise ModelTextError(f"tree {index} is cut short (tree_sizes says {size} bytes)")
        _check_tree(block, index, n_features)
        offset += size
    _check_trailer(text[offset:], parameter_kinds or {})


def _check_trailer(rest: str, kinds: dict[str, type]) -> None:
    if not rest.startswith(END_OF_TREES + "\n"):
        raise ModelTextError(f"no '{END_OF_TREES}' after the trees tree_sizes lists")
    if f"\n{END_OF_PARAMETERS}\n" not in rest:
        raise ModelTextError(f"no '{END_OF_PARAMETERS}' line (the file is cut short)")
    if "\nparameters:\n" in rest:  # LightGBM parses these lines, and crashes on others
        section = rest.split("\nparameters:\n", 1)[1].split(f"\n{END_OF_PARAMETERS}\n")[0]
        for line in section.split("\n"):
            if line and not PARAMETER_LINE.fullmatch(line):
                raise ModelTextError(f"parameters has a line that is not [key: value]: "
                                     f"{line[:40]!r}")
            if line:
                _check_parameter(*line[1:-1].split(": ", 1), kinds)
    last = rest.rstrip("\n").rsplit("\n", 1)[-1]
    if not last.startswith(PANDAS_LINE):
        raise ModelTextError(f"does not end with the '{PANDAS_LINE}' line (cut short)")


def _check_parameter(key: str, value: str, kinds: dict[str, type]) -> None:
    """A numeric parameter's value (LightGBM aborts on `[sigmoid: x]`), or a list of them."""
    kind = kinds.get(key)
    if kind in (int, float, bool):
        values = [value]
    elif kind is list:
        values = [item for item in value.split(",") if item] if value else []
        if values and not all(FLOAT.fullmatch(item) for item in values):
            return  # a list of names (metrics, interaction groups)
    else:
        return
    if not all(FLOAT.fullmatch(item) for item in values):
        raise ModelTextError(f"parameters {key}={value[:20]!r} is not a number")


def lightgbm_parameter_kinds() -> dict[str, type]:
    """LightGBM's parameter name -> the Python type of its value, read from a booster of a
    few rows that LightGBM fits and dumps here (once per process)."""
    return dict(_parameter_kinds())


@functools.cache
def _parameter_kinds() -> tuple[tuple[str, type], ...]:
    import lightgbm as lgb
    import numpy as np

    rows = np.arange(40, dtype=np.float64).reshape(20, 2)
    booster = lgb.train({"verbosity": -1, "min_data_in_leaf": 1, "min_data_in_bin": 1},
                        lgb.Dataset(rows, rows[:, 0].copy()), 1)
    return tuple((key, type(value)) for key, value in booster._get_loaded_param().items())


def _check_tree(block: str, index: int, n_features: int) -> None:
    lines = block.rstrip("\n").split("\n")
    if lines[0] != f"Tree={index}":
        raise ModelTextError(f"tree {index} does not start with 'Tree={index}'")
    where = f"tree {index}"
    fields = _key_values(lines[1:], where)
    unknown = sorted(set(fields) - {*NODE_ARRAYS, *LEAF_ARRAYS, *TREE_SCALARS,
                                    *OPTIONAL_TREE_KEYS})
    if unknown:
        raise ModelTextError(f"{where} has an unknown key {unknown[0]!r}")
    for key in (*TREE_SCALARS, *LEAF_ARRAYS[:1]):
        if key not in fields:
            raise ModelTextError(f"{where} has no {key}")
    leaves = _integer(fields, "num_leaves", 1, where)
    n_cat = _integer(fields, "num_cat", 0, where)
    arrays = {key: _numbers(value, f"{where} {key}", key in INTEGER_ARRAYS)
              for key, value in fields.items()}
    for key in LEAF_ARRAYS if leaves > 1 else LEAF_ARRAYS[:1]:  # one leaf: no weight
        if key in fields and len(arrays[key]) != leaves:
            raise ModelTextError(f"{where} {key} has {len(arrays[key])} values for "
                                 f"num_leaves={leaves}")
    if _integer(fields, "is_linear", 0, where):
        _check_linear(arrays, leaves, n_features, where)
    if leaves == 1:
        return
    for key in NODE_ARRAYS:
        if len(arrays.get(key, ())) != leaves - 1:
            raise ModelTextError(f"{where} {key} does not have num_leaves-1 = {leaves - 1} "
                                 f"values")
    if any(not 0 <= f < n_features or f != int(f) for f in arrays["split_feature"]):
        raise ModelTextError(f"{where} split_feature names a feature past max_feature_idx")
    for key in ("left_child", "right_child"):
        if any(child != int(child) or not -leaves <= child < leaves - 1
               for child in arrays[key]):
            raise ModelTextError(f"{where} {key} points outside the tree")
    _check_reachable(arrays["left_child"], arrays["right_child"], leaves, where)
    if n_cat:
        _check_categories(arrays, n_cat, where)


def _check_reachable(left: list[float], right: list[float], leaves: int, where: str) -> None:
    """Each node reached once from the root: a cycle would loop LightGBM's predict."""
    seen_nodes, seen_leaves, todo = {0}, set(), [0]
    while todo:
        node = todo.pop()
        for child in (int(left[node]), int(right[node])):
            if child < 0:
                if ~child in seen_leaves:
                    raise ModelTextError(f"{where} reaches leaf {~child} twice")
                seen_leaves.add(~child)
            elif child in seen_nodes:
                raise ModelTextError(f"{where} reaches node {child} twice (a cycle)")
            else:
                seen_nodes.add(child)
                todo.append(child)
    if len(seen_leaves) != leaves:
        raise ModelTextError(f"{where} reaches {len(seen_leaves)} of its {leaves} leaves")


def _check_linear(arrays: dict[str, list[float]], leaves: int, n_features: int,
                  where: str) -> None:
    """A linear tree's leaf models: a constant and `num_features` coefficients per leaf."""
    for key in ("leaf_const", "num_features"):
        if len(arrays.get(key, ())) != leaves:
            raise ModelTextError(f"{where} {key} does not have num_leaves = {leaves} values")
    total = int(sum(arrays["num_features"]))
    if any(count < 0 for count in arrays["num_features"]) or any(
            len(arrays.get(key, ())) != total for key in LINEAR_GROUPED):
        raise ModelTextError(f"{where} leaf_features and leaf_coeff do not hold the "
                             f"{total} values num_features says")
    if any(not 0 <= feature < n_features for feature in arrays["leaf_features"]):
        raise ModelTextError(f"{where} leaf_features names a feature past max_feature_idx")


def _check_categories(arrays: dict[str, list[float]], n_cat: int, where: str) -> None:
    bounds = arrays.get("cat_boundaries", [])
    if len(bounds) != n_cat + 1 or bounds != sorted(bounds) or bounds[0] != 0:
        raise ModelTextError(f"{where} cat_boundaries does not hold num_cat+1 rising offsets")
    if len(arrays.get("cat_threshold", [])) != bounds[-1]:
        raise ModelTextError(f"{where} cat_threshold does not hold cat_boundaries[-1] values")


def _key_values(lines: list[str], where: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise ModelTextError(f"{where} has a line that is not key=value: {line[:40]!r}")
        if key in fields:
            raise ModelTextError(f"{where} repeats {key}")
        fields[key] = value
    return fields


def _integer(fields: dict[str, str], key: str, minimum: int, where: str = "header") -> int:
    value = _whole(fields[key], f"{where} {key}")
    if value < minimum:
        raise ModelTextError(f"{where} {key}={value} is below {minimum}")
    return value


def _whole(token: str, where: str) -> int:
    if not INTEGER.fullmatch(token):
        raise ModelTextError(f"{where} is not a whole number: {token[:20]!r}")
    return int(token)


def _numbers(value: str, where: str, whole: bool) -> list[float]:
    pattern = INTEGER if whole else FLOAT
    # single spaces, as LightGBM writes them; a linear tree's per-leaf lists are grouped by
    # runs of spaces (an empty group for a leaf without features)
    tokens = value.split() if where.endswith(LINEAR_GROUPED) else value.split(" ") if value \
        else []
    for token in tokens:
        if not pattern.fullmatch(token):
            raise ModelTextError(f"{where} holds {token[:20]!r}, not a "
                                 f"{'whole ' if whole else ''}number")
    return [float(token) for token in tokens]
