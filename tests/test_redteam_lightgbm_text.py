"""The check numerlab runs on a LightGBM model text before LightGBM reads it (LightGBM's own
loader crashes the process on a damaged text) passes every model LightGBM writes: linear
trees, one-leaf trees, other objectives."""

from __future__ import annotations

import numpy as np
import pytest

from numerlab.models.lightgbm_text import ModelTextError, check_model_text


@pytest.mark.parametrize("params", [
    {}, {"linear_tree": True}, {"min_data_in_leaf": 5000}, {"num_leaves": 2},
    {"objective": "huber"}, {"objective": "quantile", "alpha": 0.3}, {"reg_sqrt": True},
    {"objective": "binary"}, {"objective": "multiclass", "num_class": 3},
])
def test_every_model_lightgbm_writes_passes(tmp_path, params):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    features = rng.integers(0, 5, (600, 6)).astype(np.float32)
    target = features[:, 0] * 0.1 + rng.normal(size=600)
    if params.get("objective") == "binary":
        target = (target > 0).astype(int)
    elif params.get("objective") == "multiclass":
        target = np.digitize(target, [-0.5, 0.5])
    booster = lgb.train({**params, "verbosity": -1, "min_data_in_leaf": params.get(
        "min_data_in_leaf", 20)}, lgb.Dataset(features, target), 8)
    booster.save_model(tmp_path / "model.txt")
    text = (tmp_path / "model.txt").read_text()
    check_model_text(text)
    with pytest.raises(ModelTextError):
        check_model_text(text[: len(text) // 2])


def test_a_numeric_parameter_that_is_not_a_number_is_refused(tmp_path):
    """LightGBM aborts the process on `[sigmoid: x]` in a model's parameters section."""
    import lightgbm as lgb

    from numerlab.models.lightgbm_text import lightgbm_parameter_kinds

    rng = np.random.default_rng(0)
    features = rng.integers(0, 5, (200, 3)).astype(np.float32)
    booster = lgb.train({"verbosity": -1}, lgb.Dataset(features, features[:, 0].copy()), 3)
    text = booster.model_to_string()
    kinds = lightgbm_parameter_kinds()
    check_model_text(text, kinds)
    with pytest.raises(ModelTextError, match="parameters sigmoid='x' is not a number"):
        check_model_text(text.replace("[sigmoid: 1]", "[sigmoid: x]"), kinds)
