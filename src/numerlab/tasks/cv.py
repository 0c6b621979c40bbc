"""task=cv: walk-forward era cross-validation (`cv.*`, conf/cv/default.yaml).

The feature matrix is loaded once, int8; each fold's training and test rows are slices of
it (consecutive eras: views, no copy), a fresh model is fitted per fold on its training
eras (early stopping, if configured, on a holdout carved from them: `fit.holdout_eras`),
and its test block is predicted. Out-of-fold predictions over all test blocks are scored as
one run is, so a CV run and a normal run read alike:

    folds.parquet                 one row per fold: eras and the fold's scores
    predictions/oof.parquet       id era fold prediction target (+ meta_model)
    per_era.parquet, metrics.json, plots/   over all out-of-fold eras
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig

from numerlab import artifacts, coverage, cv, pipeline, report, scoring, tracking
from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.models.base import build_model
from numerlab.settings import integer

log = logging.getLogger(__name__)

FOLDS = "folds.parquet"
OOF_PREDICTIONS = "predictions/oof.parquet"


def load_cv_rows(cfg: DictConfig, parts: pipeline.RunParts) -> tuple[Dataset, Any]:
    """Every era CV may use, in era order, loaded once: the training eras (all of them:
    `data.era_stride` thins each fold's training span, never a test block), and with
    `cv.eras=all` the validation eras after them (no data embargo: each fold has its own)."""
    cv.select_eras(str(cfg.cv.eras), [], [])  # checks the value
    every_era = parts.source.with_rows(era_stride=1, embargo_eras=0)
    wanted = ("train", "validation") if cfg.cv.eras == "all" else ("train",)
    splits = pipeline.load_data(cfg, every_era, wanted, post_processed=wanted)
    rows = splits.train if splits.validation is None else splits.train.concat(
        splits.validation)
    splits.train = splits.validation = None  # `rows` holds them: one int8 copy, not two
    return rows, splits


def plan(cfg: DictConfig, rows: Dataset) -> list[cv.Fold]:
    return cv.plan_folds(rows.era_labels, n_splits=cfg.cv.n_splits,
                         embargo_eras=cfg.cv.embargo_eras, scheme=str(cfg.cv.scheme),
                         train_eras=cfg.cv.train_eras, era_stride=cfg.data.era_stride)


def fit_fold(cfg: DictConfig, rows: Dataset, fold: cv.Fold, run_dir: Path,
             tracker: tracking.Tracker | None = None) -> np.ndarray:
    """A fresh model fitted on the fold's training eras; its predictions of the test block."""
    model = build_model(cfg.model)
    log.info("fold %d: fitting on eras %s..%s (%d), testing %s..%s (%d)", fold.index,
             fold.first_train_era, fold.last_train_era, fold.n_train_eras,
             fold.first_test_era, fold.last_test_era, fold.n_test_eras)
    pipeline.fit_model(cfg, rows.take_eras(list(fold.train_eras)),
                       run_dir / "folds" / f"fold-{fold.index}", model, tracker)
    test = rows.take_eras(list(fold.test_eras))
    return pipeline.predict_frame(model, test)["prediction"].to_numpy()


def fit_folds(cfg: DictConfig, rows: Dataset, folds: list[cv.Fold], run_dir: Path
              ) -> list[np.ndarray]:
    """Each fold's test predictions, fitted one after the other or, with `cv.n_jobs` > 1
    (capped by free memory), in spawned processes that memory-map the loaded int8 rows
    (`parallel.map_spawned`)."""
    from numerlab.parallel import affordable_jobs, map_spawned

    n_jobs = integer("cv.n_jobs", cfg.cv.n_jobs, minimum=1)
    jobs = min(n_jobs, len(folds), affordable_jobs(rows))
    if jobs == 1:
        return [fit_fold(cfg, rows, fold, run_dir, tracking.active()) for fold in folds]
    return map_spawned(_fit_fold_in_worker, [(cfg, fold, run_dir) for fold in folds],
                       {"rows": rows}, jobs, run_dir)


def _fit_fold_in_worker(datasets: dict[str, Dataset], cfg: DictConfig, fold: cv.Fold,
                        run_dir: Path) -> np.ndarray:
    """In a spawned worker: `fit_fold` on the memory-mapped rows (no tracker there)."""
    return fit_fold(cfg, datasets["rows"], fold, run_dir, None)


def oof_frame(parts: pipeline.RunParts, rows: Dataset, folds: list[cv.Fold],
              predictions: list[np.ndarray], splits: Any) -> tuple[pl.DataFrame, Dataset]:
    """Post-processed out-of-fold predictions of every test row, in era order, and the
    test rows themselves (aligned row for row)."""
    frames = []
    for fold, prediction in zip(folds, predictions, strict=True):
        test = rows.take_eras(list(fold.test_eras))
        frame = pl.DataFrame({
            "id": pl.Series(test.ids, dtype=pl.String),
            "era": pl.Series(test.eras, dtype=pl.String),
            "fold": pl.Series(np.full(len(test), fold.index, dtype=np.int32)),
            "prediction": prediction,
            "target": test.target.astype(np.float64),
        })
        frames.append(parts.postprocess.apply(frame, test))
    tested = rows.take_eras([era for fold in folds for era in fold.test_eras])
    frame = pipeline.attach_benchmark(
        pipeline.attach_meta_model(pl.concat(frames), splits.meta_model), splits.benchmarks)
    return frame, tested


def fold_table(folds: list[cv.Fold], per_era: pl.DataFrame) -> pl.DataFrame:
    """folds.parquet: each fold's eras and the summary of its test eras' scores."""
    records = []
    for fold in folds:
        scores = scoring.summarize(per_era.filter(pl.col("era").is_in(list(fold.test_eras))),
                                   recent_eras=None)
        records.append({
            "fold": fold.index,
            "train_first_era": fold.first_train_era, "train_last_era": fold.last_train_era,
            "n_train_eras": fold.n_train_eras,
            "test_first_era": fold.first_test_era, "test_last_era": fold.last_test_era,
            "n_test_eras": fold.n_test_eras,
            "corr_mean": scores.get("corr_mean"), "corr_sharpe": scores.get("corr_sharpe"),
            "mmc_mean": scores.get("mmc_mean"), "bmc_mean": scores.get("bmc_mean"),
        })
    return pl.DataFrame(records, schema_overrides={
        "corr_mean": pl.Float64, "corr_sharpe": pl.Float64, "mmc_mean": pl.Float64,
        "bmc_mean": pl.Float64})


FITS_MODEL = True  # fits the configured model: run dirs are named after it (cli.run_name)

def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    parts = pipeline.check(cfg, run_dir)
    pipeline.check_embargo(cfg, int(cfg.cv.embargo_eras), "cv.embargo_eras")
    if cfg.get("ckpt_path"):
        raise NumerlabError(f"ckpt_path={cfg.ckpt_path} cannot be used with task=cv: every "
                            f"fold would start from a model fitted on its test eras")
    rows, splits = load_cv_rows(cfg, parts)
    folds = plan(cfg, rows)
    coverage.plan_scoring(cfg, splits, rows, [era for fold in folds for era in fold.test_eras])
    cv.print_plan(folds)
    with artifacts.staged(run_dir) as stage:
        predictions = fit_folds(cfg, rows, folds, run_dir)
        frame, tested = oof_frame(parts, rows, folds, predictions, splits)
        (stage / "predictions").mkdir()
        frame.write_parquet(stage / OOF_PREDICTIONS)
        metrics, per_era = pipeline.score(cfg, frame, tested, parts.model_name,
                                          splits.benchmark_name)
        folds_frame = fold_table(folds, per_era)
        folds_frame.write_parquet(stage / FOLDS)
        fold_means = folds_frame["corr_mean"].drop_nulls().to_numpy()
        metrics.update(n_folds=len(folds), cv_scheme=str(cfg.cv.scheme),
                       cv_embargo_eras=int(cfg.cv.embargo_eras),
                       fold_corr_mean_std=float(np.std(fold_means)) if len(fold_means) else None)
        plots = pipeline.write_evaluation(stage, metrics, per_era)
        plots.append(Path(report.plot_folds(per_era, folds_frame,
                                            stage / artifacts.PLOTS_DIR).name))
    report.print_folds(folds_frame)
    pipeline.show(metrics, what=f"CV, {len(folds)} folds")
    pipeline.log_to_tracker(tracking.active(), metrics, per_era, run_dir, plots)
    return metrics


CV_METRICS = ("n_folds", "cv_embargo_eras", "fold_corr_mean_std")  # beside the train keys


def metric_keys(cfg: DictConfig) -> set[str]:
    """The numeric metrics.json keys a CV run writes: a train run's, over the out-of-fold
    eras, and the fold keys (checked before a sweep's first job)."""
    from numerlab.sweep_checks import train_metric_keys

    return train_metric_keys(cfg) | set(CV_METRICS)
