"""The steps every task composes; `run.py` (through a task) and the DVC stages call them.

    check config -> load data -> fit model -> predict validation + live -> post-process
    -> score -> artifacts

Rule: nothing that is reported may influence the fit. `fit_model` sees the training eras
only; early stopping and checkpoint choice look at a holdout carved from the end of them
(`fit.holdout_eras`, after `data.embargo_eras` eras), never at the eras a run scores.

Heavy libraries (torch, lightning, lightgbm, xgboost, wandb) are imported by the modules that
use them, when they use them: importing this module stays cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, data, report, scoring
from numerlab.data.dataset import Dataset
from numerlab.data.source import DataSource, build_source
from numerlab.data.v5 import META_MODEL_COLUMN
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import FitContext, Model, check_ready
from numerlab.postprocess import PostProcess, rank_unit
from numerlab.tracking import Tracker

log = logging.getLogger(__name__)

MODEL_NAME_KEY = "name"  # model configs name themselves: metrics.json `model`, run names


# --- config, checked before any data is loaded ------------------------------------------

@dataclass
class RunParts:
    """What a job builds from its config before loading data: every value that can be
    checked without data has been checked once these exist."""

    source: DataSource
    model: Model
    model_name: str
    postprocess: PostProcess
    staking: Any = None


def build_model(model_cfg: DictConfig) -> Model:
    """Instantiate the configured estimator; nested configs (networks, optimizers) are left
    for the model to build once it knows the data's shape."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    settings = OmegaConf.masked_copy(model_cfg, [k for k in model_cfg if k != MODEL_NAME_KEY])
    try:
        return instantiate(settings, _recursive_=False)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, NumerlabError):  # the model's own one-line complaint
            raise exc.__cause__ from None
        raise NumerlabError(f"model config: {message_line(exc, last=True)}") from None


def model_name(model_cfg: DictConfig) -> str:
    """The configured model's name (`model.name`: lgbm, xgboost, mlp, resnet, tabnet...)."""
    name = model_cfg.get(MODEL_NAME_KEY)
    if not name:
        raise NumerlabError("model.name is missing: every conf/model/*.yaml names its model")
    return str(name)


def seed_of(cfg: DictConfig) -> int:
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise NumerlabError(f"seed={seed!r} must be an integer")
    return seed


def holdout_eras_of(cfg: DictConfig) -> int:
    """`fit.holdout_eras` as an int (0 = no holdout)."""
    value = OmegaConf.select(cfg, "fit.holdout_eras", default=None)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NumerlabError(f"fit.holdout_eras={value!r} must be null or an integer >= 0")
    return value


def fit_context(cfg: DictConfig, run_dir: Path, tracker: Tracker | None = None) -> FitContext:
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    return FitContext(seed=seed_of(cfg), run_dir=Path(run_dir), trainer=trainer,
                      ckpt_path=cfg.get("ckpt_path"), holdout=holdout_eras_of(cfg) > 0,
                      tracker=tracker)


def check(cfg: DictConfig, run_dir: Path) -> RunParts:
    """Build and check every part of the run that needs no data: a bad value is one line
    naming the key and what is allowed, before anything is loaded or fitted."""
    seed_of(cfg)
    holdout_eras_of(cfg)
    for key in ("fnc", "exposure"):
        value = OmegaConf.select(cfg, f"scoring.{key}")
        if not isinstance(value, bool):
            raise NumerlabError(f"scoring.{key}={value!r} must be true or false")
    metric = cfg.get("optimized_metric")
    if not isinstance(metric, str) or not metric:
        raise NumerlabError(f"optimized_metric={metric!r} must name a metrics.json key")
    from numerlab.registry import build

    source = build_source(cfg.data)
    postprocess = build(cfg.postprocess, "postprocess", PostProcess)
    from numerlab.staking import build_policy

    staking = build_policy(cfg.staking)
    model = build_model(cfg.model)
    name = model_name(cfg.model)
    check_ready(model, fit_context(cfg, run_dir))
    return RunParts(source=source, model=model, model_name=name, postprocess=postprocess,
                    staking=staking)


# --- data ---------------------------------------------------------------------------------

def target_config(cfg: DictConfig) -> dict[str, Any]:
    """`cfg.target` with the targets the model config fits (`model.targets`, e.g. an
    ensemble's members; null entries mean the run's target) added to its aux columns."""
    target = OmegaConf.to_container(cfg.target, resolve=True)
    fitted = OmegaConf.select(cfg, "model.targets", default=None) or []
    extra = [str(t) for t in fitted if t is not None and t != target.get("name")]
    target["aux"] = list(dict.fromkeys([*(target.get("aux") or []), *extra]))
    return target


def postprocess_columns(cfg: DictConfig) -> dict[str, Any] | None:
    """The feature columns post-processing names (`postprocess.features`: a feature set,
    or `postprocess.columns`), as a features config for the loader; None when it names none
    (it then works on the model's features)."""
    pp = cfg.get("postprocess") or {}
    feature_set, columns = pp.get("features"), pp.get("columns")
    if feature_set is None and not columns:
        return None
    return {"set": feature_set, "columns": None if not columns else list(columns),
            "key": "postprocess.columns" if columns else "postprocess.features"}


def load_data(cfg: DictConfig, source: DataSource) -> data.Splits:
    data_dir = source.prepare()
    splits = data.load_splits(cfg.data, cfg.features, target_config(cfg),
                              extra_features=postprocess_columns(cfg))
    log.info("data %s: train %d rows / %d eras, validation %d rows / %d eras, %d features",
             data_dir, len(splits.train), splits.train.n_eras, len(splits.validation),
             splits.validation.n_eras, len(splits.feature_names))
    return splits


def split_holdout(train: Dataset, holdout_eras: int, embargo_eras: int,
                  embargo_key: str = "data.embargo_eras") -> tuple[Dataset, Dataset | None]:
    """(rows to fit on, holdout or None): the last `holdout_eras` training eras are the
    holdout, and the eras within `embargo_eras` (by era number) before its first era are
    left out, as between training and validation eras (`cv.carve_holdout`)."""
    from numerlab.cv import carve_holdout

    if not holdout_eras:
        return train, None
    fitted, holdout = carve_holdout(train.era_labels, holdout_eras, embargo_eras,
                                    embargo_key=embargo_key)
    return train.take_eras(fitted), train.take_eras(holdout)


def fit_model(cfg: DictConfig, train: Dataset, run_dir: Path, model: Model | None = None,
              tracker: Tracker | None = None) -> Model:
    """Fit `model` (default: the configured one, built now) on the training rows. A holdout
    (`fit.holdout_eras`) is carved from their end for early stopping; nothing else is seen."""
    model = build_model(cfg.model) if model is None else model
    fit_rows, holdout = split_holdout(train, holdout_eras_of(cfg), int(cfg.data.embargo_eras))
    ctx = fit_context(cfg, run_dir, tracker)
    log.info("fitting %s on %d rows x %d features (%d eras)%s", model_name(cfg.model),
             len(fit_rows), fit_rows.features.shape[1], fit_rows.n_eras,
             f", holdout {len(holdout)} rows / {holdout.n_eras} eras for early stopping"
             if holdout is not None else "")
    model.fit(fit_rows, holdout, ctx)
    return model


# --- predictions --------------------------------------------------------------------------

def predict_frame(model: Model, dataset: Dataset) -> pl.DataFrame:
    """`id era prediction target` for every row of `dataset`. A model that combines rows
    within eras (an ensemble) predicts through its optional `predict_dataset`."""
    by_era = getattr(model, "predict_dataset", None)
    prediction = np.asarray(by_era(dataset) if by_era else model.predict(dataset.features),
                            dtype=np.float64)
    if prediction.shape != (len(dataset),):
        raise NumerlabError(f"model returned {prediction.shape} predictions for {len(dataset)} rows")
    return pl.DataFrame({
        "id": pl.Series(dataset.ids, dtype=pl.String),
        "era": pl.Series(dataset.eras, dtype=pl.String),
        "prediction": prediction,
        "target": dataset.target.astype(np.float64),
    })


def attach_meta_model(frame: pl.DataFrame, meta_model: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` with a `meta_model` column joined by id; rows keep their order (the
    features used for FNC and exposure are aligned with them by position)."""
    if meta_model is None or META_MODEL_COLUMN not in meta_model.columns:
        return frame
    mm = meta_model.select("id", pl.col(META_MODEL_COLUMN).cast(pl.Float64).alias("meta_model"))
    if mm["id"].is_duplicated().any():
        raise NumerlabError("meta_model.parquet has repeated ids")
    return frame.join(mm, on="id", how="left", maintain_order="left")


def predict_splits(postprocess: PostProcess, model: Model, validation: Dataset,
                   live: Dataset | None, meta_model: pl.DataFrame | None
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Post-processed validation predictions (with the meta model where known) and live
    predictions rank-normalized into (0, 1), ready for submission (empty without live rows)."""
    frame = postprocess.apply(predict_frame(model, validation), validation)
    frame = attach_meta_model(frame, meta_model)
    if live is None or not len(live):
        return frame, pl.DataFrame(schema={"id": pl.String, "era": pl.String,
                                           "prediction": pl.Float64})
    live_frame = postprocess.apply(predict_frame(model, live).drop("target"), live)
    live_frame = live_frame.with_columns(
        prediction=rank_unit(live_frame["prediction"].to_numpy()))
    return frame, live_frame


def write_predictions(out_dir: Path, validation: pl.DataFrame, live: pl.DataFrame) -> None:
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    validation.write_parquet(out_dir / artifacts.VALIDATION_PREDICTIONS)
    live.write_parquet(out_dir / artifacts.LIVE_PREDICTIONS)
    live.select("id", "prediction").write_csv(out_dir / artifacts.SUBMISSION)


# --- scores -------------------------------------------------------------------------------

def evaluate(cfg: DictConfig, frame: pl.DataFrame, features: Dataset | None
             ) -> tuple[dict[str, Any], pl.DataFrame]:
    """Per-era scores and their summary. `features` (aligned row for row with `frame`,
    checked by id) enables FNC and feature exposure."""
    has_mm = "meta_model" in frame.columns and frame["meta_model"].is_not_null().any()
    feature_cols: list[str] | None = None
    scored = frame
    want_fnc = features is not None and bool(cfg.scoring.fnc)
    want_exposure = features is not None and bool(cfg.scoring.exposure)
    if want_fnc or want_exposure:
        ids = pl.Series("id", features.ids, dtype=pl.String)
        if len(features) != frame.height or not frame["id"].equals(ids):
            raise NumerlabError("predictions and features are not aligned by id")
        feature_cols = features.feature_names
        scored = frame.with_columns(
            pl.from_numpy(features.features, schema=feature_cols, orient="row"))
    per_era = scoring.per_era_scores(
        scored,  # rows without a target are left out by the scorer, as numerai-tools does
        meta_model="meta_model" if has_mm else None,
        features=feature_cols if want_fnc else None,
    )
    if want_exposure:
        exposure = scoring.per_era_feature_exposure(scored, features=feature_cols)
        per_era = per_era.join(exposure, on="era", how="left", maintain_order="left")
    metrics = scoring.summarize(per_era)
    return metrics, per_era


def score(cfg: DictConfig, frame: pl.DataFrame, features: Dataset, model_name: str
          ) -> tuple[dict[str, Any], pl.DataFrame]:
    """`evaluate` plus what identifies the run in metrics.json."""
    metrics, per_era = evaluate(cfg, frame, features)
    metrics["model"] = model_name
    metrics["n_features"] = len(features.feature_names)
    metrics["target"] = features.target_name
    metrics["seed"] = seed_of(cfg)
    return metrics, per_era


def write_evaluation(out_dir: Path, metrics: dict[str, Any], per_era: pl.DataFrame
                     ) -> list[Path]:
    """per_era.parquet, plots/ and metrics.json (last); returns the plot file names."""
    per_era.write_parquet(out_dir / artifacts.PER_ERA)
    plots = report.plot_scores(per_era, out_dir / artifacts.PLOTS_DIR)
    artifacts.write_metrics(out_dir / artifacts.METRICS, metrics)
    return [Path(p.name) for p in plots]


def show(metrics: dict[str, Any], what: str = "validation") -> None:
    """The terminal table."""
    report.print_metrics(metrics, title=f"{metrics['model']} · {metrics['target']} · {what}")


def log_to_tracker(tracker: Tracker, metrics: dict[str, Any], per_era: pl.DataFrame,
                   run_dir: Path, plots: list[Path]) -> None:
    tracker.log_run(metrics, per_era, [run_dir / artifacts.PLOTS_DIR / p for p in plots],
                    run_dir)
