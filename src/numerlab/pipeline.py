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
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import FitContext, Model, check_ready, save_model

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
        raise NumerlabError(f"model config: {message_line(exc)}") from None


def fit_context(cfg: DictConfig, run_dir: Path) -> FitContext:
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    return FitContext(seed=int(cfg.seed), run_dir=Path(run_dir), trainer=trainer,
                      ckpt_path=cfg.get("ckpt_path"))


def fit_model(cfg: DictConfig, train: Dataset, valid: Dataset | None, run_dir: Path,
              model: Model | None = None) -> Model:
    """Fit `model` (default: the configured one, built now) on `train`."""
    model = build_model(cfg.model) if model is None else model
    ctx = fit_context(cfg, run_dir)
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
        "id": pl.Series(dataset.ids, dtype=pl.String),
        "era": pl.Series(dataset.eras, dtype=pl.String),
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
    has_mm = "meta_model" in frame.columns and frame["meta_model"].is_not_null().any()
    feature_cols: list[str] | None = None
    scored = frame
    want_fnc = features is not None and bool(cfg.scoring.fnc)
    want_exposure = features is not None and bool(cfg.scoring.exposure)
    if want_fnc or want_exposure:
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
        per_era = per_era.join(exposure, on="era", how="left")
    metrics = scoring.summarize(per_era)
    return metrics, per_era


def predict_splits(cfg: DictConfig, model: Model, validation: Dataset, live: Dataset | None,
                   meta_model: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Post-processed validation predictions (with the meta model where known) and live
    predictions rank-normalized into (0, 1), ready for submission (empty without live rows)."""
    pp_cfg = cfg.postprocess
    frame = predict_frame(model, validation)
    frame = postprocess.apply(pp_cfg, frame, validation)
    frame = attach_meta_model(frame, meta_model)
    if live is None or not len(live):
        return frame, pl.DataFrame(schema={"id": pl.String, "era": pl.String,
                                           "prediction": pl.Float64})
    live_frame = postprocess.apply(pp_cfg, predict_frame(model, live).drop("target"), live)
    live_frame = live_frame.with_columns(
        prediction=postprocess.rank_unit(live_frame["prediction"].to_numpy()))
    return frame, live_frame


def write_predictions(out_dir: Path, validation: pl.DataFrame, live: pl.DataFrame) -> None:
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    validation.write_parquet(out_dir / artifacts.VALIDATION_PREDICTIONS)
    live.write_parquet(out_dir / artifacts.LIVE_PREDICTIONS)
    live.select("id", "prediction").write_csv(out_dir / artifacts.SUBMISSION)


def score(cfg: DictConfig, frame: pl.DataFrame, features: Dataset, model_name: str
          ) -> tuple[dict[str, Any], pl.DataFrame]:
    """`evaluate` plus what identifies the run in metrics.json."""
    metrics, per_era = evaluate(cfg, frame, features)
    metrics["model"] = model_name
    metrics["n_features"] = len(features.feature_names)
    metrics["target"] = features.target_name
    metrics["seed"] = int(cfg.seed)
    return metrics, per_era


def write_evaluation(out_dir: Path, metrics: dict[str, Any], per_era: pl.DataFrame
                     ) -> list[Path]:
    """per_era.parquet, plots/ and metrics.json (last); returns the plot file names."""
    per_era.write_parquet(out_dir / artifacts.PER_ERA)
    plots = report.plot_scores(per_era, out_dir / artifacts.PLOTS_DIR)
    artifacts.write_metrics(out_dir / artifacts.METRICS, metrics)
    return [Path(p.name) for p in plots]


def show(cfg: DictConfig, metrics: dict[str, Any], per_era: pl.DataFrame, run_dir: Path,
         plots: list[Path]) -> None:
    """The terminal table, and the run sent to the configured tracker."""
    report.print_metrics(metrics, title=f"{metrics['model']} · {metrics['target']} · validation")
    tracker = tracking.make_tracker(cfg, run_dir)
    try:
        tracker.log_run(metrics, per_era, [run_dir / artifacts.PLOTS_DIR / p for p in plots])
    finally:
        tracker.finish()


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the experiment `cfg`, write the artifact contract into `run_dir`, return metrics."""
    run_dir = Path(run_dir)
    model = build_model(cfg.model)
    check_ready(model, fit_context(cfg, run_dir))
    data_dir = data.prepare(cfg.data)
    splits = data.load_splits(cfg.data, cfg.features, cfg.target)
    log.info("data %s: train %d rows / %d eras, validation %d rows / %d eras, %d features",
             data_dir, len(splits.train), splits.train.n_eras, len(splits.validation),
             splits.validation.n_eras, len(splits.feature_names))

    with artifacts.staged(run_dir) as stage:
        fit_model(cfg, splits.train, splits.validation, run_dir, model)
        save_model(model, stage / artifacts.MODEL_DIR, splits.feature_names)
        validation, live = predict_splits(cfg, model, splits.validation, splits.live,
                                          splits.meta_model)
        write_predictions(stage, validation, live)
        metrics, per_era = score(cfg, validation, splits.validation, type(model).__name__)
        plots = write_evaluation(stage, metrics, per_era)

    show(cfg, metrics, per_era, run_dir, plots)
    log.info("artifacts in %s", run_dir)
    return metrics
