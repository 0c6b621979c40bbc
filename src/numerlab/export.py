"""Export a run's model as the cloudpickle that Numerai's model upload runs.

Numerai's runner (numerai-predict) unpickles one function and calls it era by era:
`predict(live_features, live_benchmark_models) -> pd.DataFrame` with a `prediction` column in
[0, 1], indexed like `live_features`, on 1 CPU / 4 GB / no internet, in an image with numpy,
pandas and the model libraries but without numerlab. So the pickle holds:

- numerlab's code by value (`cloudpickle.register_pickle_by_value`): `LivePredictor`, its
  scorer and the few functions they call; numpy, pandas and the model library by reference;
- the model as bytes or text (LightGBM model text, XGBoost raw model, torch state dict),
  rebuilt on the first call, so the pickle references no file;
- the post-processing as plain numbers and column names;
- an ensemble as its members' scorers, normalized weights and combine method.

Apart from code, only built-in types (str, bytes, int, float, list, dict) are stored, so no
numpy or pandas version is baked into the pickle. Python itself must match: pickled code
objects load only under the Python minor version that wrote them.

At predict time: select the trained feature columns by name, convert them to int8 in
row chunks, score, neutralize (one era: numerai-predict calls once per era) against the
post-processing's columns (selected by name too: they need not be the model's), and rank
into (0, 1) exactly as the pipeline ranks live predictions (`scoring.rank_unit`).
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from numerlab import runs
from numerlab.errors import NumerlabError, message_line
from numerlab.scoring import rank_unit

MODEL_DIR = "model"
CHUNK_ROWS = 10_000
"""Rows converted or scored at a time: a float32 chunk of 2,750 v5 features is ~110 MB."""
PROBE_ROWS = 64

Scorer = Callable[[np.ndarray], np.ndarray]
"""int8 (n, k) feature matrix -> (n,) raw predictions."""


# -- predict-time code (pickled by value; needs numpy, pandas and the model library only) --


def live_feature_matrix(live_features: pd.DataFrame, feature_names: list[str],
                        chunk_rows: int = CHUNK_ROWS, whose: str = "the model's"
                        ) -> np.ndarray:
    """The columns `feature_names` of `live_features`, by name and in that order, as an
    int8 (n, k) matrix; converted `chunk_rows` rows at a time so that a non-int8 frame
    never has a whole float copy. NumerlabError for a missing column (the message says
    `whose` columns they are) or a value that is not a whole number within int8."""
    present = set(live_features.columns)
    missing = [name for name in feature_names if name not in present]
    if missing:
        raise NumerlabError(
            f"live_features lacks {len(missing)} of {whose} {len(feature_names)} feature "
            f"columns, e.g. {missing[0]!r}")
    selected = live_features[feature_names]
    all_int8 = all(dtype == np.int8 for dtype in selected.dtypes)
    out = np.empty((len(selected), len(feature_names)), dtype=np.int8)
    for start in range(0, len(selected), chunk_rows):
        block = selected.iloc[start:start + chunk_rows]
        if all_int8:
            out[start:start + len(block)] = block.to_numpy()
            continue
        values = block.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < -128) | (
            values > 127)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            value = float(values[row, column])
            raise NumerlabError(
                f"live_features column {feature_names[column]!r} holds {value!r} at row "
                f"{start + row}: features must be whole numbers (Numerai bins 0..4)")
        out[start:start + len(block)] = values.astype(np.int8)
    return out


class LazyModel:
    """A scorer that holds its model as bytes or text (what is pickled) and builds the live
    model object from them on first use (never pickled: `_model` is left out)."""

    _model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def model(self) -> Any:
        if self._model is None:
            self._model = self.load()
        return self._model

    def load(self) -> Any:
        raise NotImplementedError


class LightGBMScorer(LazyModel):
    """A LightGBM booster kept as its model text; predicts float32 rows as `LGBMModel`."""

    def __init__(self, model_text: str, chunk_rows: int = CHUNK_ROWS):
        self.model_text = model_text
        self.chunk_rows = chunk_rows

    def load(self) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=self.model_text)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        booster = self.model()
        out = np.empty(len(features), dtype=np.float32)
        for start in range(0, len(features), self.chunk_rows):
            rows = slice(start, start + self.chunk_rows)
            out[rows] = booster.predict(features[rows].astype(np.float32))
        return out


class XGBoostScorer(LazyModel):
    """An XGBoost booster kept as its raw (UBJSON) model; predicts int8 rows as `XGBModel`."""

    def __init__(self, raw_model: bytes, chunk_rows: int = CHUNK_ROWS):
        self.raw_model = raw_model
        self.chunk_rows = chunk_rows

    def load(self) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.raw_model))
        return booster

    def __call__(self, features: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        booster = self.model()
        out = np.empty(len(features), dtype=np.float32)
        for start in range(0, len(features), self.chunk_rows):
            rows = slice(start, start + self.chunk_rows)
            out[rows] = booster.predict(xgb.DMatrix(features[rows]))
        return out


class TorchScorer(LazyModel):
    """A torch network kept as (class, constructor arguments, state-dict bytes); predicts
    as `NeuralModel`: batches of `batch_rows` int8 rows, `to_float` applied, the first output
    column (of the first element where the network returns a pair, as TabNet does)."""

    def __init__(self, network_class: type, network_kwargs: dict[str, Any], state: bytes,
                 batch_rows: int, to_float: Callable[[Any], Any]):
        self.network_class = network_class
        self.network_kwargs = network_kwargs
        self.state = state
        self.batch_rows = int(batch_rows)
        self.to_float = to_float

    def load(self) -> Any:
        import torch

        network = self.network_class(**self.network_kwargs)
        state = torch.load(io.BytesIO(self.state), map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        return network.eval()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        import torch

        network = self.model()
        out = np.empty(len(features), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(features), self.batch_rows):
                rows = np.ascontiguousarray(features[start:start + self.batch_rows])
                output = network(self.to_float(torch.from_numpy(rows)))
                output = output[0] if isinstance(output, tuple) else output
                out[start:start + len(rows)] = output[:, 0].float().numpy()
        return out


def normal_quantile(percentiles: np.ndarray) -> np.ndarray:
    """The standard normal quantile Phi^-1(p) of each p in (0, 1), as `scoring.gaussianize`:
    scipy.special.ndtri where scipy is importable, else `normal_quantile_stdlib` (an
    upload image with torch only has no scipy)."""
    p = np.asarray(percentiles, dtype=np.float64)
    try:
        from scipy.special import ndtri
    except ImportError:
        return normal_quantile_stdlib(p)
    return ndtri(p)


def normal_quantile_stdlib(percentiles: np.ndarray) -> np.ndarray:
    """Phi^-1(p) by the standard library's `NormalDist().inv_cdf` (Wichura's AS241, within
    a few ulps of ndtri), one value at a time: one live era is a few thousand rows."""
    inv_cdf = statistics.NormalDist().inv_cdf
    p = np.asarray(percentiles, dtype=np.float64)
    return np.fromiter(map(inv_cdf, p.ravel().tolist()), dtype=np.float64,
                       count=p.size).reshape(p.shape)


class EnsembleScorer:
    """Member scorers combined over all rows as ONE era, as `EnsembleModel.predict` does:
        rank:     rank_unit( sum_i w_i rank_unit(s_i) )
        gaussian: rank_unit( sum_i w_i normal_quantile(rank_unit(s_i)) )
    with s_i member i's raw predictions taken as float32 (as the ensemble takes them: the
    same ties) and w the weights normalized to sum 1. Returns float32, as the ensemble."""

    def __init__(self, scorers: list[Scorer], weights: list[float], combine: str):
        # built by `_ensemble_scorer` from a checked ensemble
        w = np.asarray(weights, dtype=np.float64)
        self.scorers = list(scorers)
        self.weights = [float(x) for x in w / w.sum()]  # the ensemble's normalized weights
        self.combine = str(combine)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        mixed = np.zeros(len(features))
        for weight, scorer in zip(self.weights, self.scorers, strict=True):
            raw = np.asarray(scorer(features), dtype=np.float32).astype(np.float64)
            ranked = rank_unit(raw)
            mixed += weight * (normal_quantile(ranked) if self.combine == "gaussian"
                               else ranked)
        return rank_unit(mixed).astype(np.float32)


class LivePredictor:
    """live_features (one era) -> DataFrame `prediction` in (0, 1), indexed like the input:
    the trained columns by name -> int8 -> scorer -> live transform (post-processing, if
    any, given its own `columns` by name) -> rank_unit."""

    def __init__(self, feature_names: list[str], scorer: Scorer, transform: Any | None,
                 chunk_rows: int = CHUNK_ROWS):
        self.feature_names = [str(name) for name in feature_names]
        self.scorer = scorer
        self.transform = transform
        self.chunk_rows = int(chunk_rows)

    def raw(self, live_features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(int8 features, the scorer's predictions as float64) for `live_features`."""
        features = live_feature_matrix(live_features, self.feature_names, self.chunk_rows)
        values = np.asarray(self.scorer(features), dtype=np.float64)
        if values.shape != (len(features),):
            raise NumerlabError(f"the model returned {values.shape} predictions for "
                                f"{len(features)} rows")
        return features, values

    def transform_features(self, live_features: pd.DataFrame,
                           features: np.ndarray) -> np.ndarray:
        """The int8 matrix of the transform's `columns`: taken from the model's `features`
        when it holds them all, else converted by name from `live_features`."""
        names = list(self.transform.columns)
        if names == self.feature_names:
            return features
        position = {name: j for j, name in enumerate(self.feature_names)}
        if all(name in position for name in names):
            return features[:, [position[name] for name in names]]
        return live_feature_matrix(live_features, names, self.chunk_rows,
                                   whose="the post-processing's")

    def columns(self) -> list[str]:
        """The live_features columns it reads: the model's, then the post-processing's."""
        extra = list(self.transform.columns) if self.transform is not None else []
        return list(dict.fromkeys([*self.feature_names, *extra]))

    def __call__(self, live_features: pd.DataFrame) -> pd.DataFrame:
        features, values = self.raw(live_features)
        if self.transform is not None:
            values = self.transform(values, self.transform_features(live_features, features))
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise NumerlabError(f"the model produced {bad} non-finite predictions "
                                f"of {len(values)}")
        return pd.DataFrame({"prediction": rank_unit(values)}, index=live_features.index)


# -- export-time code ------------------------------------------------------------------------


def model_dir(run_dir: Path) -> Path:
    path = Path(run_dir) / MODEL_DIR
    if not path.is_dir():
        raise NumerlabError(f"{run_dir}: no {MODEL_DIR}/ directory (not a trained numerlab run)")
    return path


def run_data_dir(run_cfg: Any, where: str) -> Path:
    """The run's `data.dir` (relative to the working dir, as the loader reads it)."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(run_cfg, "data.dir", default=None)
    if value is None:
        raise NumerlabError(f"{where}: has no data.dir, so the feature columns postprocess "
                            f"names cannot be read from its features.json")
    return Path(str(value)).expanduser()


def postprocess_column_names(run_cfg: Any, where: str) -> list[str] | None:
    """The feature columns the run's post-processing names (`postprocess.features`: a
    feature set, or `postprocess.columns`), resolved against the features.json of the run's
    `data.dir` exactly as the loader resolves them for train and live
    (`pipeline.postprocess_columns`, `v5.resolve_extra_features`); None when it names none
    (it then works on the model's features)."""
    from numerlab.data.v5 import read_features_json, resolve_extra_features
    from numerlab.pipeline import postprocess_columns

    extra = postprocess_columns(run_cfg)
    if extra is None:
        return None
    return resolve_extra_features(read_features_json(run_data_dir(run_cfg, where)), extra)


def live_transform_of(run_cfg: Any, feature_names: list[str], where: str) -> Any:
    """The live post-processing the run's config asks for: the post-process its
    `postprocess` names builds its own picklable live transform
    (`PostProcess.live_transform`) over the model's `feature_names` and the columns the
    config names (`postprocess_column_names`), or None for none. The one place that reads
    post-processing config here."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from numerlab.postprocess import PostProcess
    from numerlab.registry import build

    try:
        if run_cfg.get("postprocess") is None:
            raise NumerlabError(f"{where}: has no 'postprocess' key")
        pp_cfg = OmegaConf.to_container(run_cfg.postprocess, resolve=True)
    except OmegaConfBaseException as exc:
        raise NumerlabError(f"{where}: {message_line(exc)}") from None
    postprocess = build(pp_cfg, "postprocess", PostProcess)  # its settings before any file
    return postprocess.live_transform(feature_names, postprocess_column_names(run_cfg, where))


def _lightgbm_scorer(model: Any) -> LightGBMScorer:
    # the trees `LGBMModel.predict` uses: up to the early-stopping round when it stopped
    rounds = model.best_iteration if model.best_iteration is not None else -1
    return LightGBMScorer(model.booster.model_to_string(num_iteration=rounds))


def _xgboost_scorer(model: Any) -> XGBoostScorer:
    # the trees `XGBModel.predict` uses: up to the early-stopping round when it stopped
    booster = model.booster if model.best_iteration is None else model.booster[
        : model.best_iteration + 1]
    return XGBoostScorer(bytes(booster.save_raw("ubj")))


def _torch_scorer(model: Any) -> TorchScorer:
    import torch

    from numerlab.models.nn.lightning_module import features_to_float

    module = model.module
    network_config = model.config["network"]
    kwargs = {k: v for k, v in network_config.items() if not (k.startswith("_") and
                                                                k.endswith("_"))}
    nested = [k for k, v in kwargs.items() if isinstance(v, Mapping) and "_target_" in v]
    if nested:
        raise NumerlabError(f"model.network.{nested[0]}: a nested _target_ config cannot be "
                            f"exported (the network is rebuilt from plain arguments)")
    kwargs["in_features"] = int(module.hparams.in_features)
    kwargs["out_features"] = int(module.hparams.out_features)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.net.state_dict().items()}, buffer)
    return TorchScorer(type(module.net), kwargs, buffer.getvalue(),
                       model.config["eval_batch_size"], features_to_float)


def _ensemble_scorer(model: Any) -> EnsembleScorer:
    # each member's own scorer (LightGBM, XGBoost and torch members alike), combined as
    # `EnsembleModel.predict` combines them over one era
    scorers = []
    for i, member in enumerate(model.models):
        try:
            scorers.append(scorer_for(member))
        except NumerlabError as exc:
            raise NumerlabError(f"ensemble member {model.label(i)}: {exc}") from None
    return EnsembleScorer(scorers, model.weights, model.combine)


def scorer_builders() -> dict[type, Callable[[Any], Scorer]]:
    """Model class -> the builder of its export scorer. The neural class is served only
    when its module is loaded (a neural model exists only then), so exporting a GBDT model
    never imports torch."""
    import sys

    from numerlab.models.ensemble import EnsembleModel
    from numerlab.models.gbdt import LGBMModel, XGBModel

    builders: dict[type, Callable[[Any], Scorer]] = {
        LGBMModel: _lightgbm_scorer, XGBModel: _xgboost_scorer,
        EnsembleModel: _ensemble_scorer}
    neural = sys.modules.get("numerlab.models.nn.model")
    if neural is not None:
        builders[neural.NeuralModel] = _torch_scorer
    return builders


def scorer_for(model: Any) -> Scorer:
    """A picklable, self-contained scorer predicting as `model.predict` does, by the
    model's class (or the nearest base class with a builder in `scorer_builders`)."""
    builders = scorer_builders()
    for cls in type(model).__mro__:
        if cls in builders:
            return builders[cls](model)
    exportable = "LGBMModel, XGBModel, NeuralModel, EnsembleModel"
    raise NumerlabError(f"model class {type(model).__module__}.{type(model).__qualname__} "
                        f"cannot be exported (exportable: {exportable})")


def check_scorer(scorer: Scorer, model: Any, n_features: int, where: Path) -> None:
    """The scorer, rebuilt from its bytes, must predict what the loaded model predicts, on
    random 0..4 rows: catches a network that its plain arguments do not rebuild. (The
    tolerance allows a model that predicts on a GPU here; the scorer runs on the CPU.)"""
    probe = np.random.default_rng(0).integers(0, 5, size=(PROBE_ROWS, n_features),
                                              dtype=np.int8)
    expected = np.asarray(model.predict(probe), dtype=np.float64)
    got = np.asarray(scorer(probe), dtype=np.float64)
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        gap = float(np.max(np.abs(got - expected)))
        raise NumerlabError(f"{where}: the exported model predicts differently from the saved "
                            f"one (max abs difference {gap:.3g})")


def model_libraries(scorer: Scorer) -> list[str]:
    """The distributions a scorer's model is read and run with, as the image must hold
    them (an ensemble's: every member's, in order)."""
    if isinstance(scorer, EnsembleScorer):
        return list(dict.fromkeys(name for member in scorer.scorers
                                  for name in model_libraries(member)))
    libraries = {LightGBMScorer: "lightgbm", XGBoostScorer: "xgboost", TorchScorer: "torch"}
    return [name for cls, name in libraries.items() if isinstance(scorer, cls)]


def build_predictor(run_dir: Path, run_cfg: Mapping[str, Any] | None = None
                    ) -> LivePredictor:
    """The LivePredictor of the model saved in `<run_dir>/model/`, post-processed as
    `run_cfg` says (its `postprocess`, and `data.dir` for the columns post-processing
    names; default: the run's own `.hydra/config.yaml`), checked to predict as the saved
    model does."""
    from omegaconf import DictConfig, OmegaConf

    from numerlab.models.base import load_model

    path = model_dir(run_dir)
    model, feature_names = load_model(path)
    if run_cfg is None:
        run_cfg, where = runs.required_config(run_dir), str(Path(run_dir) / runs.SAVED_CONFIG)
    else:
        where = f"the config of run {run_dir}"
        run_cfg = run_cfg if isinstance(run_cfg, DictConfig) else OmegaConf.create(
            dict(run_cfg))
    transform = live_transform_of(run_cfg, feature_names, where)
    scorer = scorer_for(model)
    check_scorer(scorer, model, len(feature_names), path)
    return LivePredictor(feature_names, scorer, transform)


def predict_function(predictor: LivePredictor
                     ) -> Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame]:
    """Numerai's `predict(live_features, live_benchmark_models)` around `predictor`;
    benchmark models are accepted and not used."""

    def predict(live_features: pd.DataFrame,
                live_benchmark_models: pd.DataFrame | None = None) -> pd.DataFrame:
        return predictor(live_features)

    return predict


def build_predict(run_dir: Path, run_cfg: Mapping[str, Any] | None = None
                  ) -> Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame]:
    """Numerai's `predict(live_features, live_benchmark_models)` for the model saved in
    `<run_dir>/model/` (`build_predictor`)."""
    return predict_function(build_predictor(run_dir, run_cfg))


def pickle_by_value(obj: Any) -> bytes:
    """cloudpickle `obj` with numerlab's code stored by value, so that loading it needs no
    numerlab installed."""
    import cloudpickle

    import numerlab

    registered = "numerlab" in cloudpickle.list_registry_pickle_by_value()
    if not registered:
        cloudpickle.register_pickle_by_value(numerlab)
    try:
        return cloudpickle.dumps(obj)
    finally:
        if not registered:
            cloudpickle.unregister_pickle_by_value(numerlab)


@dataclass(frozen=True)
class Exported:
    """A written upload pickle: its path, the predictor it holds (to predict here what
    it predicts there) and the model libraries it needs (`model_libraries`)."""

    path: Path
    predictor: LivePredictor
    libraries: list[str]


def export_pickle(run_dir: Path, out_path: Path,
                  run_cfg: Mapping[str, Any] | None = None) -> Exported:
    """Write the model upload pickle of the run in `run_dir` to `out_path` (see
    `build_predictor`; `run_cfg`: the run's config, default its `.hydra/config.yaml`)."""
    out_path = Path(out_path)
    from numerlab.artifacts import atomic_file

    predictor = build_predictor(Path(run_dir), run_cfg)
    data = pickle_by_value(predict_function(predictor))
    with atomic_file(out_path, "wb") as out:
        out.write(data)
    return Exported(out_path, predictor, model_libraries(predictor.scorer))


def export_model(run_dir: Path, out_path: Path,
                 run_cfg: Mapping[str, Any] | None = None) -> Path:
    """`export_pickle`; returns `out_path`."""
    return export_pickle(run_dir, out_path, run_cfg).path


def live_rows(run_cfg: Any, columns: list[str], n_rows: int, where: str
              ) -> tuple[pd.DataFrame, str]:
    """(the first `n_rows` rows of live_features, where they came from): `columns` and
    `era` of the run's `<data.dir>/live.parquet` indexed by id, as Numerai hands them to
    the upload; random 0..4 rows of those columns (one era) where the file is not there."""
    from numerlab.data.layout import ERA, ID, LIVE_FILE

    path = run_data_dir(run_cfg, where) / LIVE_FILE
    if path.is_file():
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
            present = set(file.schema_arrow.names)
            missing = [c for c in (ID, *columns) if c not in present]
            if missing:
                raise NumerlabError(f"{path} has no column {missing[0]!r}")
            wanted = [ID, *([ERA] if ERA in present else []), *columns]
            batch = next(file.iter_batches(batch_size=n_rows, columns=wanted))
            frame = batch.to_pandas(ignore_metadata=True)  # id stays a column
        except NumerlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - arrow/OS errors alike mean "unreadable"
            raise NumerlabError(f"cannot read live rows from {path}: "
                                f"{message_line(exc)}") from None
        frame = frame.set_index(frame.pop(ID).astype(str).rename(ID))
        frame[ERA] = frame[ERA].astype(str) if ERA in frame else "X"
        return frame, str(path)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 5, size=(n_rows, len(columns)), dtype=np.int8),
                         columns=columns,
                         index=pd.Index([f"row{i:05d}" for i in range(n_rows)], name=ID))
    frame.insert(0, ERA, "X")
    return frame, f"random 0..4 rows ({path} is not there)"
