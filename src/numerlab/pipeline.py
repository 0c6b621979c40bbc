"""One function runs an experiment; `run.py` (Hydra) and the DVC stages call its pieces.

    load data -> fit model -> predict validation + live -> post-process -> score -> artifacts

Heavy libraries (torch, lightning, lightgbm, xgboost, wandb) are imported by the modules that
use them, when they use them: importing this module stays cheap.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, data, postprocess, report, scoring, tracking
from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext, Model, load_model, save_model

log = logging.getLogger(__name__)

META_MODEL_COLUMN = "numerai_meta_model"


def build_model(model_cfg: DictConfig) -> Model:
    """Instantiate the configured estimator; nested configs (networks, optimizers) are left
    for the model to build once it knows the data's shape."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(model_cfg, _recursive_=False)
    except InstantiationException as exc:
        raise NumerlabError(f"model config: {str(exc).splitlines()[0]}") from None


def fit_model(cfg: DictConfig, train: Dataset, valid: Dataset | None, run_dir: Path) -> Model:
    model = build_model(cfg.model)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    ctx = FitContext(seed=int(cfg.seed), run_dir=Path(run_dir), trainer=trainer,
                     ckpt_path=cfg.get("ckpt_path"))
    log.info("fitting %s on %d rows x %d features (%d eras)", type(model).__name__,
             len(train), train.features.shape[1], train.n_eras)
    model.fit(train, valid, ctx)
    return model


def predict_frame(model: Model, dataset: Dataset) -> pl.DataFrame:
    """`id era prediction target` for every row of `dataset`."""
    prediction = np.asarray(model.predict(dataset.features), dtype=np.float64)
    if prediction.shape != (len(dataset),):
        raise NumerlabError(f"model returned {prediction.shape} predictions for {len(dataset)} rows")
    return pl.DataFrame({
        "id": dataset.ids.astype(str),
        "era": dataset.eras.astype(str),
        "prediction": prediction,
        "target": dataset.target.astype(np.float64),
    })


def attach_meta_model(frame: pl.DataFrame, meta_model: pl.DataFrame | None) -> pl.DataFrame:
    if meta_model is None or META_MODEL_COLUMN not in meta_model.columns:
        return frame
    mm = meta_model.select("id", pl.col(META_MODEL_COLUMN).cast(pl.Float64).alias("meta_model"))
    return frame.join(mm, on="id", how="left")


def evaluate(cfg: DictConfig, frame: pl.DataFrame, features: Dataset | None
             ) -> tuple[dict[str, Any], pl.DataFrame]:
    """Per-era scores and their summary. `features` (aligned row for row with `frame`) enables
    FNC and feature exposure."""
    scoring_cfg = cfg.get("scoring", {})
    has_mm = "meta_model" in frame.columns and frame["meta_model"].is_not_null().any()
    feature_cols: list[str] | None = None
    scored = frame
    want_fnc = features is not None and scoring_cfg.get("fnc", True)
    want_exposure = features is not None and scoring_cfg.get("exposure", True)
    if want_fnc or want_exposure:
        feature_cols = features.feature_names
        scored = frame.with_columns(
            pl.from_numpy(features.features, schema=feature_cols, orient="row"))
    per_era = scoring.per_era_scores(
        scored.drop_nulls("target").filter(pl.col("target").is_not_nan()),
        meta_model="meta_model" if has_mm else None,
        features=feature_cols if want_fnc else None,
    )
    if want_exposure:
        exposure = scoring.per_era_feature_exposure(scored, features=feature_cols)
        per_era = per_era.join(exposure, on="era", how="left")
    metrics = scoring.summarize(per_era)
    return metrics, per_era


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the experiment `cfg`, write the artifact contract into `run_dir`, return metrics."""
    run_dir = Path(run_dir)
    data_dir = data.prepare(cfg.data)
    splits = data.load_splits(cfg.data, cfg.features, cfg.target)
    log.info("data %s: train %d rows / %d eras, validation %d rows / %d eras, %d features",
             data_dir, len(splits.train), splits.train.n_eras, len(splits.validation),
             splits.validation.n_eras, len(splits.feature_names))

    with artifacts.staged(run_dir) as stage:
        model = fit_model(cfg, splits.train, splits.validation, run_dir)
        save_model(model, stage / artifacts.MODEL_DIR, splits.feature_names)

        validation = predict_frame(model, splits.validation)
        validation = postprocess.apply(cfg.get("postprocess"), validation, splits.validation)
        validation = attach_meta_model(validation, splits.meta_model)
        metrics, per_era = evaluate(cfg, validation, splits.validation)
        metrics["model"] = type(model).__name__
        metrics["n_features"] = len(splits.feature_names)
        metrics["target"] = splits.target_name
        metrics["seed"] = int(cfg.seed)

        (stage / "predictions").mkdir()
        validation.write_parquet(stage / artifacts.VALIDATION_PREDICTIONS)
        per_era.write_parquet(stage / artifacts.PER_ERA)
        if splits.live is not None and len(splits.live):
            live = predict_frame(model, splits.live).drop("target")
            live = postprocess.apply(cfg.get("postprocess"), live, splits.live)
            live = live.with_columns(prediction=postprocess.rank_unit(live["prediction"].to_numpy()))
            live.write_parquet(stage / artifacts.LIVE_PREDICTIONS)
            live.select("id", "prediction").write_csv(stage / artifacts.SUBMISSION)
        plots = report.plot_scores(per_era, stage / artifacts.PLOTS_DIR)
        artifacts.write_metrics(stage / artifacts.METRICS, metrics)

    report.print_metrics(metrics, title=f"{metrics['model']} · {metrics['target']} · validation")
    tracker = tracking.make_tracker(cfg, run_dir)
    try:
        tracker.log_run(metrics, per_era, [run_dir / artifacts.PLOTS_DIR / p.name for p in plots])
    finally:
        tracker.finish()
    log.info("artifacts in %s", run_dir)
    return metrics


def load_for_prediction(model_dir: Path) -> tuple[Model, list[str]]:
    """The fitted model in `model_dir` and the feature names it expects."""
    return load_model(model_dir)
