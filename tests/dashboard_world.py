"""A fixed world for the dashboard's tests: run dirs with metrics we write ourselves, a history
with known rows, written at a fixed clock (time-machine), and the composed config.

Everything lives under one root that becomes the working dir, so the screen shows paths
relative to it (`outputs/...`), never a tmp path."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import yaml

from numerlab.history import (
    DRY_RUN,
    FAILED,
    SENT,
    History,
    NotificationRow,
    PositionRow,
    Score,
    StakeDecision,
)

# Tuesday 2026-12-08 12:30 UTC: the round that opened at 12:00 closes at 13:00. In Paris
# (time-machine makes a ZoneInfo destination the local zone): local times differ from UTC.
NOW = datetime(2026, 12, 8, 13, 30, tzinfo=ZoneInfo("Europe/Paris"))
ROUND = 1180
MODELS = ("alpha_model", "beta_model")
ERAS = [f"{e:04d}" for e in range(575, 587)]


def write_run(run_dir: Path, metrics: dict, task: str = "train",
              overrides: list[str] | None = None, corr: list[float] | None = None,
              features: bool = True) -> Path:
    """A finished run dir as task=train leaves it (the parts the dashboard reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or []))
    (run_dir / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"task": {"_target_": f"numerlab.tasks.{task}.run"}}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    values = corr or [0.01 * ((i % 5) - 1) for i in range(len(ERAS))]
    pl.DataFrame({"era": ERAS, "corr": values, "mmc": [v / 2 for v in values],
                  "fnc": [v / 3 for v in values]}).write_parquet(run_dir / "per_era.parquet")
    if features:
        pl.DataFrame({"kind": ["exposure"] * 3 + ["gain"] * 3,
                      "rank": pl.Series([1, 2, 3, 1, 2, 3], dtype=pl.Int32),
                      "feature": ["feature_a", "feature_b", "feature_c",
                                  "feature_c", "feature_a", "feature_d"],
                      "value": [0.31, 0.22, 0.11, 0.5, 0.3, 0.2]}
                     ).write_parquet(run_dir / "features.parquet")
    return run_dir


def metrics(corr_mean: float, corr_sharpe: float, model: str = "lgbm") -> dict:
    return {"corr_mean": corr_mean, "corr_std": 0.02, "corr_sharpe": corr_sharpe,
            "corr_max_drawdown": 0.05, "mmc_mean": corr_mean / 2, "mmc_std": 0.01,
            "mmc_sharpe": corr_sharpe / 2, "bmc_mean": corr_mean / 4,
            "max_feature_exposure": 0.3, "n_eras": len(ERAS), "model": model,
            "target": "target"}


def write_runs(root: Path) -> dict[str, Path]:
    """Three train runs in outputs/, a sweep of two jobs (one failed) in multirun/."""
    runs = {
        "lgbm": write_run(root / "outputs/2026-12-07/10-00-00-lgbm", metrics(0.021, 1.10)),
        "xgboost": write_run(root / "outputs/2026-12-07/11-00-00-xgboost",
                             metrics(0.018, 1.35, "xgboost"), overrides=["model=xgboost"]),
        "cv": write_run(root / "outputs/2026-12-07/12-00-00-cv-lgbm", metrics(0.015, 0.80),
                        task="cv", features=False),
        "sweep0": write_run(root / "multirun/2026-12-06/09-00-00/0-lgbm",
                            metrics(0.024, 0.95), overrides=["model.params.num_leaves=31"]),
    }
    failed = root / "multirun/2026-12-06/09-00-00/1-lgbm"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["model.params.num_leaves=63"]))
    (failed / "error.txt").write_text("data.dir=/nowhere does not exist\n")
    return runs


def write_history(path: Path, runs: dict[str, Path]) -> History:
    """Known rows: this round's submissions (one sent, one failed), an older dry run, live
    scores of five resolved rounds, positions, a stake decision and a notification."""
    store = History(path)
    sent = store.begin_submission(ROUND, "alpha_model", run_dir=str(runs["lgbm"]),
                                  config_hash="c0ffee", sha256="ab" * 32)
    store.finish_submission(sent, SENT, upload_id="upload-123")
    store.begin_submission(ROUND - 1, "beta_model", run_dir=str(runs["xgboost"]),
                           config_hash="beef", sha256="cd" * 32, status=DRY_RUN)
    failed = store.begin_submission(ROUND, "beta_model", run_dir=str(runs["xgboost"]),
                                    config_hash="beef", sha256="cd" * 32)
    store.finish_submission(failed, FAILED, error="Numerai API create_submission: fake 503")
    scores = []
    for i, number in enumerate(range(ROUND - 30, ROUND - 25)):
        for model, scale in (("alpha_model", 1.0), ("beta_model", -0.5)):
            scores += [Score(model, number, "canon_corr", scale * 0.01 * (i + 1), day=20,
                             resolved=True),
                       Score(model, number, "canon_mmc", scale * 0.002 * (i - 1), day=20,
                             resolved=True),
                       Score(model, number, "canon_bmc", scale * 0.001 * i, day=20,
                             resolved=True)]
    store.upsert_scores(scores)
    store.upsert_positions([
        PositionRow("alpha_model", ROUND - 1, "", 5.0),
        PositionRow("alpha_model", ROUND - 2, "", 4.0),
        PositionRow("alpha_model", ROUND - 30, "", 3.0, payout=0.25, resolved=True),
        # resolved long ago: Numerai finalized it, no claim left (no payout stored)
        PositionRow("alpha_model", ROUND - 60, "", 2.0, resolved=True),
    ])
    store.record_stake(StakeDecision("alpha_model", ROUND, "abs", "sharpe_scaled",
                                     "validation", 4.0, 5.0, outcome="planned"))
    store.record_notification(NotificationRow("failed", "ntfy://***", True,
                                              "beta_model: submission failed",
                                              "round 1180 beta_model failed"))
    return store


def screen_text(app) -> str:
    """The screen as plain text (what a person reads), as export_screenshot renders it."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()
