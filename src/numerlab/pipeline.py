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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, data, eras, report, scoring, settings
from numerlab.data.dataset import Dataset
from numerlab.data.layout import META_MODEL_COLUMN
from numerlab.data.source import DataSource, build_source
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext, Model, build_model, check_ready, model_name
from numerlab.phases import timed
from numerlab.postprocess import PostProcess
from numerlab.tracking import Tracker

log = logging.getLogger(__name__)

# --- config, checked before any data is loaded ------------------------------------------

@dataclass
class RunParts:
    """What a job builds from its config before loading data: every value that can be
    checked without data has been checked once these exist."""

    source: DataSource
    model: Model
    model_name: str
    postprocess: PostProcess


SEED_MAX = 2**32 - 1  # numpy, torch and the GBDT libraries take seeds in [0, 2**32)


def seed_of(cfg: DictConfig) -> int:
    return settings.integer("seed", cfg.get("seed"), minimum=0, maximum=SEED_MAX)


def holdout_eras_of(cfg: DictConfig) -> int:
    """`fit.holdout_eras` as an int (0 = no holdout)."""
    return settings.integer("fit.holdout_eras", OmegaConf.select(cfg, "fit.holdout_eras"),
                            minimum=0, optional=True) or 0


@dataclass(frozen=True)
class Scoring:
    """The `scoring` group (conf/config.yaml): what a run scores besides CORR and MMC."""

    fnc: bool
    exposure: bool
    benchmark: str | None
    recent_eras: int | None

    @classmethod
    def of(cls, cfg: DictConfig) -> Scoring:
        group = cfg.get("scoring")
        settings.keys("scoring", group, [f.name for f in fields(cls)])
        return cls(fnc=settings.boolean("scoring.fnc", group.get("fnc")),
                   exposure=settings.boolean("scoring.exposure", group.get("exposure")),
                   benchmark=settings.text("scoring.benchmark", group.get("benchmark"),
                                           optional=True, what="auto, null or a column"),
                   recent_eras=settings.integer("scoring.recent_eras",
                                                group.get("recent_eras"), minimum=1,
                                                optional=True))


FIT_KEYS = ("holdout_eras",)  # the `fit` group: the holdout is all a fit may look at


def check_settings(cfg: DictConfig) -> None:
    """Every setting every task shares, checked before any work: unknown keys of the root
    groups that have no class of their own (`+fit.holdout=8` must not run with no
    holdout), the seed, the holdout, scoring, payout, tournament, notify and task keys, and the
    objective a sweep reads (`optimized_metric`, against what the task writes)."""
    from numerlab import cv, notify
    from numerlab.backtest import payout_rule
    from numerlab.sweep_checks import check_optimized_metric, task_metric_keys
    from numerlab.tournament import check_config_keys

    seed_of(cfg)
    for group, known in (("fit", FIT_KEYS), ("cv", cv.settings_keys())):
        settings.keys(group, cfg.get(group), known)
    holdout_eras_of(cfg)
    if "scoring" in cfg:
        Scoring.of(cfg)
    if "payout" in cfg:
        payout_rule(OmegaConf.to_container(cfg.payout, resolve=True))
    if "tournament" in cfg:
        check_config_keys(cfg.tournament)
    if "notify" in cfg:
        notify.check_settings(cfg.notify)
    if task_metric_keys(cfg) is not None:  # a task whose metrics a sweep may rank
        check_optimized_metric(cfg)


def fit_context(cfg: DictConfig, run_dir: Path, tracker: Tracker | None = None) -> FitContext:
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    return FitContext(seed=seed_of(cfg), run_dir=Path(run_dir), trainer=trainer,
                      ckpt_path=cfg.get("ckpt_path"), holdout=holdout_eras_of(cfg) > 0,
                      tracker=tracker)


def check(cfg: DictConfig, run_dir: Path) -> RunParts:
    """Build and check every part of the run that needs no data: a bad value is one line
    naming the key and what is allowed, before anything is loaded or fitted."""
    check_settings(cfg)
    from numerlab.registry import build

    source = build_source(cfg.data)
    check_embargo(cfg, source.embargo_eras)
    postprocess = build(cfg.postprocess, "postprocess", PostProcess)
    from numerlab.staking import build_policy

    build_policy(cfg.staking)  # its settings, checked before any data
    model = build_model(cfg.model)
    name = model_name(cfg.model)
    check_ready(model, fit_context(cfg, run_dir))
    return RunParts(source=source, model=model, model_name=name, postprocess=postprocess)


def check_embargo(cfg: DictConfig, embargo_eras: int, key: str = "data.embargo_eras") -> None:
    """Every fitted target's labels must resolve before the first scored era: a target of
    D days spans D/5 weekly eras, so the embargo between the eras fitted on and the eras a
    run scores (and its holdout) must be at least that, or the last training labels overlap
    the scored eras' (a 60-day target needs 12; the 20-day ones 4). `key` is the setting
    that embargo comes from (data.embargo_eras; cv.embargo_eras between CV folds). Every
    door checks it: run.py's tasks (`check`, task=cv) and the DVC features stage."""
    eras.check_embargo(fitted_targets(cfg), embargo_eras, key)


# --- data ---------------------------------------------------------------------------------

def data_fetcher(cfg: DictConfig) -> Any:
    """`fetch(version, data_dir, files=None) -> (version, paths)`: sync Numerai data
    `version` (None = the newest listed) into `data_dir` over `cfg.tournament`, only what
    is missing or changed (`data.source.Fetch`). None without a tournament group."""
    if "tournament" not in cfg:
        return None

    def fetch(version: str | None, data_dir: Path, files: list[str] | None = None
              ) -> tuple[str, list[Path]]:
        from numerlab.tournament import TournamentClient

        client = TournamentClient.from_config(cfg.tournament)
        version = version or client.latest_version()
        log.info("Numerai data %s -> %s", version, data_dir)
        return version, client.sync_dataset(version, data_dir, files)

    return fetch


LOAD_KEY = "load"  # conf/config.yaml: the columns loaded besides features and target
LOAD_DERIVED_FROM = {"targets": "model.targets",  # what conf/config.yaml interpolates
                     "postprocess_features": "postprocess.features",
                     "postprocess_columns": "postprocess.columns"}


def loaded(cfg: DictConfig, key: str) -> Any:
    """`load.<key>` (conf/config.yaml derives it from the model and post-processing
    configs), resolved to plain values; a config without `load` (a run saved before it
    existed, a hand-written one) is read at the key it derives from."""
    where = f"{LOAD_KEY}.{key}" if LOAD_KEY in cfg else LOAD_DERIVED_FROM[key]
    value = OmegaConf.select(cfg, where, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def target_config(cfg: DictConfig) -> dict[str, Any]:
    """`cfg.target` with the targets the model fits (`load.targets` = `model.targets`, e.g.
    an ensemble's members; null entries mean the run's target) added to its aux columns."""
    target = OmegaConf.to_container(cfg.target, resolve=True)
    extra = [str(t) for t in loaded(cfg, "targets") or []
             if t is not None and t != target.get("name")]
    target["aux"] = list(dict.fromkeys([*(target.get("aux") or []), *extra]))
    return target


def fitted_targets(cfg: DictConfig) -> list[str]:
    """Every target a model fits: the run's, and those of `load.targets`."""
    return list(dict.fromkeys([str(cfg.target.name), *(str(t) for t in
                                                        loaded(cfg, "targets") or []
                                                        if t is not None)]))


def postprocess_columns(cfg: DictConfig) -> dict[str, Any] | None:
    """The feature columns post-processing names (`load.postprocess_features`: a feature
    set, or `load.postprocess_columns`; = `postprocess.features`/`postprocess.columns`), as
    a features config for the loader; None when it names none (it then works on the model's
    features)."""
    feature_set = loaded(cfg, "postprocess_features")
    columns = loaded(cfg, "postprocess_columns")
    if feature_set is None and not columns:
        return None
    return {"set": feature_set, "columns": None if not columns else list(columns),
            "key": "postprocess.columns" if columns else "postprocess.features"}


@timed("load")
def load_data(cfg: DictConfig, source: DataSource,
              splits: tuple[str, ...] = ("train", "validation", "live"),
              post_processed: tuple[str, ...] = ("validation", "live")) -> data.Splits:
    """The `splits` of the configured data (downloaded first where the source does that),
    with the targets the model fits, the columns post-processing needs and the benchmark
    column (`source`: the built data source, its dir, era stride and embargo; task=cv reads
    every era with no embargo, `DataSource.with_rows`); `post_processed` are the splits
    whose predictions are post-processed."""
    data_dir = source.prepare(fetch=data_fetcher(cfg))
    read = data.load_splits(source, cfg.features,
                            target_config(cfg), splits=splits,
                            extra_features=postprocess_columns(cfg),
                            post_processed=post_processed)
    log.info("data %s: %s, %d features", data_dir, ", ".join(
        f"{name} {len(split)} rows / {split.n_eras} eras"
        for name, split in (("train", read.train), ("validation", read.validation))
        if split is not None), len(read.feature_names))
    return with_benchmarks(cfg, read)


def with_benchmarks(cfg: DictConfig, splits: data.Splits) -> data.Splits:
    """`splits` with the benchmark column `scoring.benchmark` names (BMC), when there is one."""
    from numerlab.data.v5 import read_benchmarks, resolve_benchmark

    name = resolve_benchmark(splits.data_dir, OmegaConf.select(cfg, "scoring.benchmark"))
    if name is not None:
        splits.benchmark_name = name
        splits.benchmarks = read_benchmarks(splits.data_dir, name)
    return splits


def split_holdout(train: Dataset, holdout_eras: int, embargo_eras: int,
                  embargo_key: str = "data.embargo_eras") -> tuple[Dataset, Dataset | None]:
    """(rows to fit on, holdout or None): the last `holdout_eras` training eras are the
    holdout, and the eras within `embargo_eras` (by era number) before its first era are
    left out, as between training and validation eras (`eras.carve_holdout`)."""
    if not holdout_eras:
        return train, None
    fitted, holdout = eras.carve_holdout(train.era_labels, holdout_eras, embargo_eras,
                                    embargo_key=embargo_key)
    return train.take_eras(fitted), train.take_eras(holdout)


@timed("fit")
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
        raise NumerlabError(f"model returned {prediction.shape} predictions for "
                            f"{len(dataset)} rows")
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


def attach_benchmark(frame: pl.DataFrame, benchmarks: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` with a `benchmark` column (the scoring.benchmark model's predictions) joined
    by id, rows in order; an error when the benchmark file's ids match none of the rows."""
    if benchmarks is None:
        return frame
    joined = frame.join(benchmarks.select("id", "benchmark"), on="id", how="left",
                        maintain_order="left")
    if frame.height and joined["benchmark"].is_null().all():
        raise NumerlabError("the benchmark-models file's ids match none of the scored rows "
                            "(is it from another data version?)")
    return joined


@timed("predict")
def predict_splits(postprocess: PostProcess, model: Model, validation: Dataset,
                   live: Dataset | None, meta_model: pl.DataFrame | None,
                   benchmarks: pl.DataFrame | None = None
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Post-processed validation predictions (with the meta model and the benchmark where
    known) and live predictions rank-normalized into (0, 1), ready for submission (empty
    without live rows)."""
    frame = postprocess.apply(predict_frame(model, validation), validation)
    frame = attach_benchmark(attach_meta_model(frame, meta_model), benchmarks)
    if live is None or not len(live):
        return frame, pl.DataFrame(schema={"id": pl.String, "era": pl.String,
                                           "prediction": pl.Float64})
    return frame, predict_live(postprocess, model, live)


def predict_live(postprocess: PostProcess, model: Model, live: Dataset) -> pl.DataFrame:
    """`id era prediction` for the live rows: post-processed, then ranked into (0, 1)."""
    live_frame = postprocess.apply(predict_frame(model, live).drop("target"), live)
    ranked = scoring.rank_unit(live_frame["prediction"].to_numpy())
    return live_frame.with_columns(prediction=ranked)


@timed("write")
def write_predictions(out_dir: Path, validation: pl.DataFrame, live: pl.DataFrame) -> None:
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    validation.write_parquet(out_dir / artifacts.VALIDATION_PREDICTIONS)
    live.write_parquet(out_dir / artifacts.LIVE_PREDICTIONS)
    from numerlab.submission import write_submission

    write_submission(live["id"], live["prediction"], out_dir / artifacts.SUBMISSION)


# --- scores -------------------------------------------------------------------------------

def feature_correlations(frame: pl.DataFrame, features: Dataset) -> np.ndarray:
    """(n_eras of `features`, k) per-era |corr| of `frame["prediction"]` with each feature
    (`scoring.feature_correlations`): computed once a run, read by the scores' feature
    exposure and by the feature diagnostics. Rows are aligned with `features` (checked)."""
    features.check_aligned(frame["id"])
    return scoring.feature_correlations(frame["prediction"].to_numpy(), features.features,
                                        features.era_index, features.n_eras)


def evaluate(cfg: DictConfig, frame: pl.DataFrame, features: Dataset | None,
             correlations: np.ndarray | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """Per-era scores and their summary. `features` (aligned row for row with `frame`,
    checked by id) enables FNC and feature exposure; `correlations`: the run's
    `feature_correlations`, when it has them already."""
    has_mm = "meta_model" in frame.columns and frame["meta_model"].is_not_null().any()
    has_bm = "benchmark" in frame.columns and frame["benchmark"].is_not_null().any()
    want_fnc = features is not None and bool(cfg.scoring.fnc)
    want_exposure = features is not None and bool(cfg.scoring.exposure)
    if want_fnc or want_exposure:
        features.check_aligned(frame["id"])
    per_era = scoring.per_era_scores(
        frame,  # rows without a target are left out by the scorer, as numerai-tools does
        meta_model="meta_model" if has_mm else None,
        features=features.features if want_fnc else None,  # int8, aligned: no frame copy
        benchmark="benchmark" if has_bm else None,
    )
    if want_exposure:
        if correlations is None:
            correlations = feature_correlations(frame, features)
        exposure = pl.DataFrame({
            "era": pl.Series(features.era_labels, dtype=pl.String),
            "feature_exposure": scoring.max_per_era(correlations)})
        per_era = per_era.join(exposure, on="era", how="left", maintain_order="left")
    metrics = scoring.summarize(per_era, recent_eras=cfg.scoring.recent_eras)
    return metrics, per_era


def score(cfg: DictConfig, frame: pl.DataFrame, features: Dataset, model_name: str,
          benchmark_name: str | None = None, correlations: np.ndarray | None = None
          ) -> tuple[dict[str, Any], pl.DataFrame]:
    """`evaluate` plus what identifies the run in metrics.json."""
    from numerlab.backtest import payout_metrics

    metrics, per_era = evaluate(cfg, frame, features, correlations)
    metrics.update(payout_metrics(per_era, OmegaConf.to_container(cfg.payout,
                                                                  resolve=True)))
    if "bmc_mean" in metrics:
        metrics["benchmark"] = benchmark_name
    metrics["model"] = model_name
    metrics["n_features"] = len(features.feature_names)
    metrics["target"] = features.target_name
    metrics["seed"] = seed_of(cfg)
    return metrics, per_era


@timed("write")
def write_evaluation(out_dir: Path, metrics: dict[str, Any], per_era: pl.DataFrame
                     ) -> list[Path]:
    """per_era.parquet, plots/ and metrics.json (last); returns the plot file names."""
    per_era.write_parquet(out_dir / artifacts.PER_ERA)
    plots = report.plot_scores(per_era, out_dir / artifacts.PLOTS_DIR)
    artifacts.write_metrics(out_dir / artifacts.METRICS, metrics)
    return [Path(p.name) for p in plots]


@dataclass
class Evaluation:
    """What `evaluate_run` wrote and what the terminal and the tracker show of it."""

    metrics: dict[str, Any]
    per_era: pl.DataFrame
    plots: list[Path]
    top_features: pl.DataFrame


@timed("score")
def evaluate_run(cfg: DictConfig, out_dir: Path, model: Model, frame: pl.DataFrame,
                 features: Dataset, model_name: str, benchmark_name: str | None,
                 diagnostics_dir: Path | None = None) -> Evaluation:
    """A trained run's validation evaluation, as both doors write it (task=train, the DVC
    evaluate stage): feature diagnostics (`diagnostics_dir`, default `out_dir`), scores,
    per_era.parquet, plots and metrics.json (last). The per-era |corr| of the predictions
    with each feature is computed once for the diagnostics and the scores."""
    from numerlab import diagnostics

    correlations = feature_correlations(frame, features)
    top = diagnostics.write_run_diagnostics(diagnostics_dir or out_dir, model, features,
                                            frame, correlations)
    metrics, per_era = score(cfg, frame, features, model_name, benchmark_name, correlations)
    plots = write_evaluation(out_dir, metrics, per_era)
    return Evaluation(metrics, per_era, plots, top)


def show_evaluation(evaluation: Evaluation) -> None:
    """The metrics table and, under it, the top features."""
    from numerlab import diagnostics

    show(evaluation.metrics)
    diagnostics.print_footer(evaluation.top_features)


def show(metrics: dict[str, Any], what: str = "validation") -> None:
    """The terminal table."""
    report.print_metrics(metrics, title=f"{metrics['model']} · {metrics['target']} · {what}")


def log_to_tracker(tracker: Tracker, metrics: dict[str, Any], per_era: pl.DataFrame,
                   run_dir: Path, plots: list[Path]) -> None:
    tracker.log_run(metrics, per_era, [run_dir / artifacts.PLOTS_DIR / p for p in plots],
                    run_dir)
