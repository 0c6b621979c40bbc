"""LightGBM and XGBoost behind the numerlab model protocol.

Both are fed the int8 feature matrix without a float copy of it: LightGBM through a
pyarrow table of int8 columns, XGBoost through a QuantileDMatrix over the int8 array.
Prediction converts bounded row chunks only.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from numerlab import settings
from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import FitContext
from numerlab.models.progress import RoundsProgress, lightgbm_callback, xgboost_callback

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


def _xgboost_complaint(exc: BaseException) -> str:
    """XGBoost's own sentence of an error: its first line without the time and source
    location (`[01:02:03] .../objective.cc:27: Unknown objective function: ...`); the
    candidates and the native stack trace after it are left out."""
    first = str(exc).split("Stack trace:", 1)[0].strip().splitlines()
    if not first:
        return message_line(exc)
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", first[0])


def _probe_rows(n: int = 64, k: int = 3) -> Dataset:
    """A few random rows in the layout of the data (int8 bins 0..4, one era), for checking
    a model's settings by fitting it before any data is loaded."""
    rng = np.random.default_rng(0)
    return Dataset(ids=np.array([f"p{i}" for i in range(n)]), eras=np.array(["0001"] * n,
                   dtype=object), features=rng.integers(0, 5, (n, k), dtype=np.int8),
                   feature_names=[f"f{j}" for j in range(k)],
                   target=(rng.integers(0, 5, n) / 4).astype(np.float32), target_name="target")


def _int8_table(features: np.ndarray):
    import pyarrow as pa

    return pa.Table.from_arrays(
        [pa.array(features[:, j]) for j in range(features.shape[1])],
        names=[f"f{j}" for j in range(features.shape[1])],
    )


def _check_gbdt_context(name: str, ctx: FitContext, early_stopping_rounds: int | None) -> None:
    """What a GBDT model cannot do, said before any data is loaded."""
    accelerator = str((ctx.trainer or {}).get("accelerator", "auto")).lower()
    if accelerator not in ("auto", "cpu"):
        raise NumerlabError(f"trainer.accelerator={accelerator} applies to neural models; "
                            f"{name} runs on cpu here (use trainer=auto or trainer=cpu)")
    if ctx.ckpt_path:
        raise NumerlabError(f"ckpt_path={ctx.ckpt_path}: {name} cannot resume from a "
                            f"checkpoint (only neural models can)")
    if early_stopping_rounds and not ctx.holdout:
        raise NumerlabError(f"model.early_stopping_rounds={early_stopping_rounds} needs a "
                            f"holdout to stop on: set fit.holdout_eras (e.g. 8), or null "
                            f"for fixed rounds")


class GBDTModel:
    """What the LightGBM and XGBoost wrappers share: settings, checks, save/load of their
    parameters. `params` are the library's training parameters, `num_boost_round` the
    rounds, `early_stopping_rounds` stops on the holdout's MSE (needs fit.holdout_eras).
    Defaults live in conf/model/, not here."""

    library = "GBDT"
    model_file = "model"
    label = "gbdt"       # the progress bar's name of the fit (the model config's name)
    show_progress = True  # a rich bar of rounds while fitting (off for the settings probe)

    def __init__(self, params: dict[str, Any], num_boost_round: int,
                 early_stopping_rounds: int | None):
        self.params = dict(params or {})
        _check_params(self.params)
        self.num_boost_round = settings.integer("model.num_boost_round", num_boost_round,
                                                minimum=1)
        self.early_stopping_rounds = settings.integer(
            "model.early_stopping_rounds", early_stopping_rounds, minimum=1, optional=True)
        self.booster = None
        self.best_iteration: int | None = None

    def check(self, ctx: FitContext) -> None:
        """Before any data: what the context asks that this library cannot do, parameter
        names the library does not know, and values it refuses (one boosting round on a
        few random rows, with these params)."""
        _check_gbdt_context(self.library, ctx, self.early_stopping_rounds)
        self._check_param_names()
        probe = copy.copy(self)
        probe.num_boost_round, probe.early_stopping_rounds = 1, None
        probe.show_progress = False
        probe.fit(_probe_rows(), None, FitContext(seed=ctx.seed, run_dir=ctx.run_dir))

    def _check_param_names(self) -> None:
        """NumerlabError for a `model.params` key the library does not know."""

    def _refuse_unknown(self, unknown: list[str], known: list[str]) -> None:
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise NumerlabError(f"model.params.{unknown[0]} is not a parameter of "
                                f"{self.library}{hint}")

    def _progress(self) -> RoundsProgress:
        return RoundsProgress(self.label, self.num_boost_round, enabled=self.show_progress)

    def _stops_early(self, valid: Dataset | None) -> bool:
        return valid is not None and bool(self.early_stopping_rounds)

    def save(self, path: Path) -> None:
        self._save_booster(Path(path) / self.model_file)
        (Path(path) / "params.json").write_text(json.dumps(
            {"params": self.params, "num_boost_round": self.num_boost_round,
             "early_stopping_rounds": self.early_stopping_rounds,
             "best_iteration": self.best_iteration}, indent=1))

    @classmethod
    def load(cls, path: Path):
        params_file = Path(path) / "params.json"
        try:
            meta = json.loads(params_file.read_text())
            model = cls(meta["params"], meta["num_boost_round"],
                        meta.get("early_stopping_rounds"))
            model.best_iteration = meta.get("best_iteration")
        except (OSError, ValueError, KeyError, TypeError, NumerlabError) as exc:
            raise NumerlabError(f"{params_file}: cannot read the saved settings "
                                f"({type(exc).__name__}: {message_line(exc)})") from None
        model._load_booster(Path(path) / cls.model_file)
        return model

    def gain_importance(self, n_features: int) -> np.ndarray:
        """(k,) total split gain per feature, normalized to sum 1 (the feature
        diagnostics' `gain`)."""
        gain = self._split_gain(n_features)
        total = gain.sum()
        return gain / total if total > 0 else gain

    def _split_gain(self, n_features: int) -> np.ndarray:
        raise NotImplementedError

    def _save_booster(self, path: Path) -> None:
        raise NotImplementedError

    def _load_booster(self, path: Path) -> None:
        raise NotImplementedError


class LGBMModel(GBDTModel):
    """LightGBM regressor over an Arrow table of int8 columns (conf/model/lgbm.yaml)."""

    library = "LightGBM"
    model_file = "lgbm.txt"
    label = "lgbm"

    def _check_param_names(self) -> None:
        # LightGBM only logs "Unknown parameter" and trains on: its own list of names and
        # aliases (the C API's parameter dump) tells a typo from a parameter
        try:
            from lightgbm.basic import _ConfigAliases

            aliases = _ConfigAliases._get_all_param_aliases()
        except (ImportError, AttributeError):  # a LightGBM without the dump: no name check
            return
        known = sorted(set(aliases) | {a for names in aliases.values() for a in names})
        self._refuse_unknown([k for k in self.params if k not in known], known)

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        import lightgbm as lgb

        train = train.with_known_target()
        params = {**self.params, "seed": ctx.seed, "deterministic": True, "verbosity": -1}
        if not params.get("force_row_wise"):
            # else LightGBM times col-wise against row-wise histograms and keeps the faster:
            # under load the choice flips, and the model's last bits with it (its docs ask
            # for one of the two with `deterministic`)
            params.setdefault("force_col_wise", True)
        train_set = lgb.Dataset(_int8_table(train.features), label=train.target,
                                free_raw_data=True)
        valid_sets, names, callbacks = [], [], []
        if valid is not None:
            known = valid.with_known_target()
            valid_sets = [lgb.Dataset(_int8_table(known.features), label=known.target,
                                      reference=train_set)]
            names = ["holdout"]
            if self._stops_early(valid):
                callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        if ctx.tracker is not None and valid_sets:
            callbacks.append(_lgb_curve_logger(ctx.tracker))
        try:
            with self._progress() as bar:
                self.booster = lgb.train(params, train_set,
                                         num_boost_round=self.num_boost_round,
                                         valid_sets=valid_sets, valid_names=names,
                                         callbacks=[*callbacks, lightgbm_callback(bar)])
                bar.finish()
        except lgb.basic.LightGBMError as exc:
            raise NumerlabError(f"LightGBM rejected model.params: {message_line(exc, last=True)}"
                                f"{_text_params(self.params)}") from None
        self.best_iteration = (self.booster.best_iteration or None) if self._stops_early(
            valid) else None

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = np.empty(len(features), dtype=np.float32)
        for rows in _chunks(len(features)):
            out[rows] = self.booster.predict(features[rows].astype(np.float32),
                                             num_iteration=self.best_iteration)
        return out

    def _split_gain(self, n_features: int) -> np.ndarray:
        return np.asarray(self.booster.feature_importance(importance_type="gain"),
                          dtype=np.float64)

    def _save_booster(self, path: Path) -> None:
        self.booster.save_model(str(path))

    def _load_booster(self, path: Path) -> None:
        import lightgbm as lgb

        from numerlab.models.lightgbm_text import (
            ModelTextError,
            check_model_text,
            lightgbm_parameter_kinds,
        )

        try:
            text = Path(path).read_text()
            # LightGBM crashes on a damaged text instead of raising
            check_model_text(text, lightgbm_parameter_kinds())
            self.booster = lgb.Booster(model_str=text)
        except (OSError, UnicodeDecodeError, ModelTextError, lgb.basic.LightGBMError) as exc:
            raise NumerlabError(f"{path}: not a readable LightGBM model "
                                f"({message_line(exc, last=True)})") from None


class XGBModel(GBDTModel):
    """XGBoost regressor (hist) over a QuantileDMatrix of the int8 array
    (conf/model/xgboost.yaml)."""

    library = "XGBoost"
    model_file = "xgboost.json"
    label = "xgboost"

    def _check_param_names(self) -> None:
        # XGBoost warns "Parameters: { ... } are not used" and trains on: a one-round fit
        # with the params tells, by that warning
        import xgboost as xgb

        rows = _probe_rows()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                xgb.train({**self.params, "verbosity": 1}, xgb.DMatrix(rows.features,
                                                                       label=rows.target), 1)
            except xgb.core.XGBoostError:
                return  # a bad value: the probe fit names it
        for warning in caught:
            match = re.search(r"Parameters: \{(.*?)\} (?:are|is) not used", str(warning.message),
                              re.S)
            if match:
                unknown = [n.strip().strip('"') for n in match.group(1).split(",")]
                self._refuse_unknown([n for n in unknown if n], [])

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        import xgboost as xgb

        train = train.with_known_target()
        params = {**self.params, "seed": ctx.seed, "verbosity": 0}
        max_bin = int(params.get("max_bin", 256))
        dtrain = xgb.QuantileDMatrix(train.features, label=train.target, max_bin=max_bin)
        evals, kwargs = [], {}
        if valid is not None:
            known = valid.with_known_target()
            evals = [(xgb.QuantileDMatrix(known.features, label=known.target, ref=dtrain,
                                          max_bin=max_bin), "holdout")]
            if self._stops_early(valid):
                kwargs["early_stopping_rounds"] = self.early_stopping_rounds
            if ctx.tracker is not None:
                kwargs["callbacks"] = [_xgb_curve_logger(ctx.tracker)]
        try:
            with self._progress() as bar:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), xgboost_callback(bar)]
                self.booster = xgb.train(params, dtrain, num_boost_round=self.num_boost_round,
                                         evals=evals, verbose_eval=False, **kwargs)
                bar.finish()
        except xgb.core.XGBoostError as exc:
            raise NumerlabError(f"XGBoost rejected model.params: "
                                f"{_xgboost_complaint(exc)}{_text_params(self.params)}"
                                ) from None
        self.best_iteration = int(self.booster.best_iteration) if self._stops_early(
            valid) else None

    def predict(self, features: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        rounds = (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)
        out = np.empty(len(features), dtype=np.float32)
        for rows in _chunks(len(features)):
            out[rows] = self.booster.predict(xgb.DMatrix(features[rows]),
                                             iteration_range=rounds)
        return out

    def _split_gain(self, n_features: int) -> np.ndarray:
        gain = np.zeros(n_features)
        # fitted on an array: features are named f0, f1, ...; unused ones are absent
        for name, value in self.booster.get_score(importance_type="total_gain").items():
            gain[int(name.removeprefix("f"))] = value
        return gain

    def _save_booster(self, path: Path) -> None:
        self.booster.save_model(str(path))

    def _load_booster(self, path: Path) -> None:
        import xgboost as xgb

        self.booster = xgb.Booster()
        if not Path(path).is_file():
            raise NumerlabError(f"{path}: missing (the saved model is incomplete)")
        try:
            self.booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise NumerlabError(f"{path}: not a readable XGBoost model "
                                f"({_xgboost_complaint(exc)})") from None


def _lgb_curve_logger(tracker: Any):
    """A LightGBM callback sending each iteration's holdout metric to the tracker."""
    def log_iteration(env: Any) -> None:
        tracker.log_metrics({"iteration": env.iteration + 1,
                             **{f"{data}/{metric}": value
                                for data, metric, value, _ in env.evaluation_result_list}})
    return log_iteration


def _xgb_curve_logger(tracker: Any):
    """An XGBoost callback sending each iteration's holdout metric to the tracker."""
    import xgboost as xgb

    class CurveLogger(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            tracker.log_metrics({"iteration": epoch + 1,
                                 **{f"{data}/{metric}": values[-1]
                                    for data, metrics in evals_log.items()
                                    for metric, values in metrics.items()}})
            return False

    return CurveLogger()
