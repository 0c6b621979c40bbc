"""Experiment tracking: one W&B run per job (offline unless configured online).

Only the resolved config minus anything that looks like a secret is sent; API keys come
from the environment / `wandb login`, never from configs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|public_id)", re.IGNORECASE)


def scrub(value: Any) -> Any:
    """Drop every mapping key that names a secret, recursively."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class Tracker:
    """No-op tracker; `logger=none`."""

    def log_run(self, metrics: dict[str, Any], per_era: pl.DataFrame, plots: list[Path]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker(Tracker):
    def __init__(self, cfg: DictConfig, run_dir: Path):
        import wandb

        logger_cfg = cfg.logger
        config = scrub(OmegaConf.to_container(cfg, resolve=True))
        config.pop("logger", None)
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.get("entity"),
            mode=logger_cfg.mode,
            group=logger_cfg.get("group"),
            tags=list(logger_cfg.get("tags") or []),
            dir=str(logger_cfg.get("dir") or run_dir),
            name=Path(run_dir).name,
            config=config,
            reinit="finish_previous",
        )

    def log_run(self, metrics: dict[str, Any], per_era: pl.DataFrame, plots: list[Path]) -> None:
        import wandb

        for step, row in enumerate(per_era.iter_rows(named=True)):
            self.run.log({f"era/{k}": v for k, v in row.items() if k != "era"}, step=step)
        self.run.log({"per_era": wandb.Table(dataframe=per_era.to_pandas())})
        self.run.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
        self.run.summary.update({k: v for k, v in metrics.items() if v is not None})

    def finish(self) -> None:
        self.run.finish()


def make_tracker(cfg: DictConfig, run_dir: Path) -> Tracker:
    if cfg.logger.kind == "wandb":
        return WandbTracker(cfg, run_dir)
    return Tracker()
