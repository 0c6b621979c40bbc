"""LightGBM and XGBoost behind the numerlab model protocol.

Both are fed the int8 feature matrix without a float copy of it: LightGBM through a
pyarrow table of int8 columns, XGBoost through a QuantileDMatrix over the int8 array.
Prediction converts bounded row chunks only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import FitContext

PREDICT_CHUNK_ROWS = 100_000


def _chunks(n: int, size: int = PREDICT_CHUNK_ROWS):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _check_params(params: dict[str, Any]) -> None:
    """A hyperparameter that is not a number or a string the library knows (e.g. an
    unresolved value) fails before the library's own, less clear, message."""
    for key, value in params.items():
        if isinstance(value, (list, dict)):
            raise NumerlabError(f"model.params.{key}={value!r}: expected a scalar")


def _text_params(params: dict[str, Any]) -> str:
    """`key='value'` for each parameter given as non-numeric text: where a library's
    complaint about a bad value does not name the key, the culprit is among these."""
    def numeric(value: Any) -> bool:
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return True

    text = [f"{k}={v!r}" for k, v in params.items() if isinstance(v, str) and not numeric(v)]
    return f" (text values: {', '.join(text)})" if text else ""


def _int8_table(features: np.ndarray):
    import pyarrow as pa

    return pa.Table.from_arrays(
        [pa.array(features[:, j]) for j in range(features.shape[1])],
        names=[f"f{j}" for j in range(features.shape[1])],
    )


class LGBMModel:
    """LightGBM regressor. `params` are LightGBM training parameters (conf/model/lgbm.yaml)."""

    def __init__(self, params: dict[str, Any] | None = None, num_boost_round: int = 500,
                 early_stopping_rounds: int | None = None):
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.booster = None

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        import lightgbm as lgb

        train = train.with_known_target()
        params = {**self.params, "seed": ctx.seed, "deterministic": True, "verbosity": -1}
        train_set = lgb.Dataset(_int8_table(train.features), label=train.target,
                                free_raw_data=True)
        valid_sets, callbacks = [], []
        if valid is not None and self.early_stopping_rounds:
            known = valid.with_known_target()
            valid_sets = [lgb.Dataset(_int8_table(known.features), label=known.target,
                                      reference=train_set)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        _check_params(self.params)
        try:
            self.booster = lgb.train(params, train_set, num_boost_round=self.num_boost_round,
                                     valid_sets=valid_sets, callbacks=callbacks)
        except lgb.basic.LightGBMError as exc:
            raise NumerlabError(f"LightGBM rejected model.params: {message_line(exc, last=True)}"
                                f"{_text_params(self.params)}") from None

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = np.empty(len(features), dtype=np.float32)
        for rows in _chunks(len(features)):
            out[rows] = self.booster.predict(features[rows].astype(np.float32))
        return out

    def save(self, path: Path) -> None:
        self.booster.save_model(str(Path(path) / "lgbm.txt"))
        (Path(path) / "params.json").write_text(json.dumps(
            {"params": self.params, "num_boost_round": self.num_boost_round}, indent=1))

    @classmethod
    def load(cls, path: Path) -> LGBMModel:
        import lightgbm as lgb

        meta = json.loads((Path(path) / "params.json").read_text())
        model = cls(meta["params"], meta["num_boost_round"])
        model.booster = lgb.Booster(model_file=str(Path(path) / "lgbm.txt"))
        return model


class XGBModel:
    """XGBoost regressor (hist). `params` are XGBoost booster parameters (conf/model/xgboost.yaml)."""

    def __init__(self, params: dict[str, Any] | None = None, num_boost_round: int = 500,
                 early_stopping_rounds: int | None = None):
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.booster = None

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        import xgboost as xgb

        train = train.with_known_target()
        params = {**self.params, "seed": ctx.seed, "verbosity": 0}
        max_bin = int(params.get("max_bin", 256))
        dtrain = xgb.QuantileDMatrix(train.features, label=train.target, max_bin=max_bin)
        evals, kwargs = [], {}
        if valid is not None and self.early_stopping_rounds:
            known = valid.with_known_target()
            evals = [(xgb.QuantileDMatrix(known.features, label=known.target, ref=dtrain), "valid")]
            kwargs["early_stopping_rounds"] = self.early_stopping_rounds
        _check_params(self.params)
        try:
            self.booster = xgb.train(params, dtrain, num_boost_round=self.num_boost_round,
                                     evals=evals, verbose_eval=False, **kwargs)
        except xgb.core.XGBoostError as exc:
            raise NumerlabError(f"XGBoost rejected model.params: {message_line(exc, last=True)}") from None

    def predict(self, features: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        out = np.empty(len(features), dtype=np.float32)
        for rows in _chunks(len(features)):
            out[rows] = self.booster.predict(xgb.DMatrix(features[rows]))
        return out

    def save(self, path: Path) -> None:
        self.booster.save_model(str(Path(path) / "xgboost.json"))
        (Path(path) / "params.json").write_text(json.dumps(
            {"params": self.params, "num_boost_round": self.num_boost_round}, indent=1))

    @classmethod
    def load(cls, path: Path) -> XGBModel:
        import xgboost as xgb

        meta = json.loads((Path(path) / "params.json").read_text())
        model = cls(meta["params"], meta["num_boost_round"])
        model.booster = xgb.Booster()
        model.booster.load_model(str(Path(path) / "xgboost.json"))
        return model
