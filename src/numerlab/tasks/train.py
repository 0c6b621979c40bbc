"""task=train (the default): fit on the training eras, predict validation and live, score
the validation eras, write the artifact contract into the run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts, coverage, phases, pipeline, tracking
from numerlab.models.base import save_model

log = logging.getLogger(__name__)


FITS_MODEL = True  # fits the configured model: run dirs are named after it (cli.run_name)

def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    parts = pipeline.check(cfg, run_dir)
    timings: dict[str, float] = {}
    with phases.recording(timings):
        splits = pipeline.load_data(cfg, parts.source)
    coverage.plan_scoring(cfg, splits, splits.validation)  # what can be scored, before fitting
    tracker = tracking.active()
    with artifacts.staged(run_dir) as stage, phases.recording(timings):
        pipeline.fit_model(cfg, splits.train, run_dir, parts.model, tracker)
        with phases.phase("write"):
            save_model(parts.model, stage / artifacts.MODEL_DIR, splits.feature_names)
        validation, live = pipeline.predict_splits(parts.postprocess, parts.model,
                                                   splits.validation, splits.live,
                                                   splits.meta_model, splits.benchmarks)
        pipeline.write_predictions(stage, validation, live)
        evaluation = pipeline.evaluate_run(cfg, stage, parts.model, validation,
                                           splits.validation, parts.model_name,
                                           splits.benchmark_name)
        phases.write(stage / phases.TIMINGS, timings)
    pipeline.show_evaluation(evaluation)
    pipeline.log_to_tracker(tracker, evaluation.metrics, evaluation.per_era, run_dir,
                            evaluation.plots)
    log.info("artifacts in %s", run_dir)
    return evaluation.metrics


def metric_keys(cfg: DictConfig) -> set[str]:
    """The numeric metrics.json keys a run writes (checked before a sweep's first job)."""
    from numerlab.sweep_checks import train_metric_keys

    return train_metric_keys(cfg)
