"""Glue between Hydra's job and the pipeline: one-line errors, the sweep objective."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from numerlab.errors import NumerlabError


def run_hydra_job(cfg: DictConfig) -> float | None:
    """Run one Hydra job; a NumerlabError becomes `error: ...` on stderr and exit status 2."""
    from hydra.core.hydra_config import HydraConfig

    from numerlab import pipeline

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = pipeline.run(cfg, run_dir)
    except NumerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    objective = cfg.get("optimized_metric") or "corr_mean"
    value = metrics.get(objective)
    return None if value is None else float(value)
