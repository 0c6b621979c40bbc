"""A real NSGA-II sweep (`hparams_search=lgbm_pareto`, task=cv, tiny LightGBM on the small
synthetic data, which has a benchmark file): each job hands the sweeper one value per
objective, a trial that fails does not stop the study, and the sweep dir holds the front
Optuna found, with its plot."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import SMALL_DATA, run_in_process
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow  # four cross-validated fits

OBJECTIVES = ["corr_sharpe", "bmc_mean", "corr_max_drawdown"]


def test_nsga2_sweep_on_cv_writes_the_pareto_front(tmp_path, small_data_dir):
    sweep_dir = tmp_path / "sweep"
    proc = run_in_process([
        "hparams_search=lgbm_pareto", *SMALL_DATA, f"data.dir={small_data_dir}",
        f"hydra.sweep.dir={sweep_dir}", "cv.n_splits=2", "cv.embargo_eras=4",
        # num_boost_round=0 is refused when the job starts: those trials fail
        "model.num_boost_round=choice(30,0)",
        "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.population_size=3",
        "hydra.sweeper.sampler.seed=3"])
    assert proc.returncode == 0, proc.stderr[-3000:]

    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 6 and all(p.name.endswith("-cv-lgbm") for p in jobs)
    finished = {p.name: json.loads((p / "metrics.json").read_text())
                for p in jobs if (p / "metrics.json").is_file()}
    failed = [p.name for p in jobs if (p / "error.txt").is_file()]
    assert finished and failed, (list(finished), failed)  # the study went on past a failure
    for metrics in finished.values():  # task=cv scored every objective, BMC included
        assert all(isinstance(metrics[key], float) for key in OBJECTIVES), metrics

    table = pl.read_csv(sweep_dir / "pareto.csv")
    ours = sorted(tuple(round(row[k], 12) for k in OBJECTIVES)
                  for row in table.filter(pl.col("pareto_front") == 1).iter_rows(named=True))
    # the front Optuna's study found from the values the jobs returned
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    optuna_front = sorted(tuple(round(v, 12) for v in s["values"]) for s in results.solutions)
    assert ours == optuna_front
    assert set(table.filter(pl.col("status") == "failed")["name"]) == set(failed)
    assert (sweep_dir / "pareto.png").stat().st_size > 0
    assert "Pareto front" in proc.stdout and "## Pareto front" in (
        sweep_dir / "summary.md").read_text()
