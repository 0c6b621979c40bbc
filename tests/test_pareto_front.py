"""Searches over several objectives (numerlab.pareto): the `*_pareto` search configs, the
objective a job hands the sweeper, the non-dominated sort (against Optuna's own Pareto front
and a brute-force check) and the front in the sweep summary."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import polars as pl
import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from numerlab import cli, pareto, summary, sweep_checks
from numerlab.errors import NumerlabError
from numerlab.pareto import Objective

MODELS = ["lgbm", "xgboost", "mlp", "resnet", "tabnet"]
# Optuna calls create_trial/add_trial (the oracle below) experimental
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
OBJECTIVES = {"corr_sharpe": "maximize", "bmc_mean": "maximize",
              "corr_max_drawdown": "minimize"}


def compose_with_hydra(overrides: list[str]):
    cli.register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


# --- the search configs ---------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_pareto_search_composes_nsga2_on_cv(model):
    cfg = compose_with_hydra([f"hparams_search={model}_pareto"])
    choices = cfg.hydra.runtime.choices
    assert (choices.model, choices.task) == (model, "cv")
    assert choices["hydra/sweeper/sampler"] == "nsgaii"
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.NSGAIISampler"
    assert cfg.hydra.sweeper.study_name == f"{model}_pareto"
    assert cfg.cv.eras == "train"  # the choice is not made on the eras a run reports
    assert OmegaConf.to_container(cfg.optimized_metric) == OBJECTIVES
    # the sweeper's directions are read from the objectives, in their order
    assert list(cfg.hydra.sweeper.direction) == list(OBJECTIVES.values())
    # the same search space as the model's single-objective search
    single = compose_with_hydra([f"hparams_search={model}_optuna"])
    assert cfg.hydra.sweeper.params == single.hydra.sweeper.params
    # every objective is a key task=cv writes (the check a sweep runs before its first job)
    sweep_checks.check_optimized_metric(cfg)
    assert set(OBJECTIVES) <= sweep_checks.task_metric_keys(cfg)


def test_objectives_changed_on_the_command_line_move_the_directions():
    cfg = compose_with_hydra(["hparams_search=lgbm_pareto", "~optimized_metric.bmc_mean",
                              "+optimized_metric.mmc_mean=maximize"])
    assert [(o.metric, o.direction) for o in pareto.config_objectives(cfg)] == [
        ("corr_sharpe", "maximize"), ("corr_max_drawdown", "minimize"),
        ("mmc_mean", "maximize")]
    assert list(cfg.hydra.sweeper.direction) == ["maximize", "minimize", "maximize"]


def test_a_direction_typed_over_the_objectives_fails_the_sweep_check():
    cfg = compose_with_hydra(["hparams_search=lgbm_pareto",
                              "hydra.sweeper.direction=[maximize,maximize,maximize]"])
    with pytest.raises(NumerlabError, match="disagrees with optimized_metric"):
        sweep_checks.check_optimized_metric(cfg)


def test_an_objective_the_task_does_not_write_fails_the_sweep_check():
    cfg = compose_with_hydra(["hparams_search=lgbm_pareto",
                              "+optimized_metric.corr_sharp=maximize"])
    with pytest.raises(NumerlabError, match="optimized_metric=corr_sharp is not a metrics.json"):
        sweep_checks.check_optimized_metric(cfg)


@pytest.mark.parametrize(("metric", "direction", "message"), [
    (["corr_sharpe", "bmc_mean"], ["maximize"], "names 2 metrics .* has 1"),
    ({"corr_sharpe": "up"}, None, "optimized_metric.corr_sharpe"),
    ([], None, "empty list"),
    ({"corr_sharpe": "maximize", "corr_max_drawdown": "minimize"}, ["maximize", "maximize"],
     "hydra.sweeper.direction=maximize,maximize disagrees with optimized_metric"),
])
def test_bad_objectives_are_one_line(metric, direction, message):
    with pytest.raises(NumerlabError, match=message) as error:
        pareto.objectives(metric, direction)
    assert "\n" not in str(error.value)


def test_a_list_of_metrics_takes_the_sweepers_directions():
    assert pareto.objectives(["corr_sharpe", "corr_max_drawdown"], ["maximize", "minimize"]) == [
        Objective("corr_sharpe", "maximize"), Objective("corr_max_drawdown", "minimize")]
    assert pareto.objectives("corr_sharpe", "minimize") == [Objective("corr_sharpe", "minimize")]


# --- what a job returns to the sweeper ------------------------------------------------------

def test_job_returns_one_value_per_objective_in_their_order():
    cfg = OmegaConf.create({"optimized_metric": dict(OBJECTIVES)})
    metrics = {"corr_max_drawdown": 0.3, "corr_sharpe": 1.5, "bmc_mean": 0.01, "n_eras": 9}
    assert cli.objective(cfg, metrics) == (1.5, 0.01, 0.3)
    # one undefined objective: no values, the sweeper records a failed trial
    assert cli.objective(cfg, {**metrics, "bmc_mean": None}) is None
    assert cli.objective(cfg, {**metrics, "bmc_mean": math.nan}) is None
    assert cli.objective(OmegaConf.create({"optimized_metric": "corr_sharpe"}), metrics) == 1.5
    with pytest.raises(NumerlabError, match="optimized_metric=bmc_mean is not a key"):
        cli.objective(cfg, {"corr_sharpe": 1.0, "corr_max_drawdown": 0.1})


# --- the non-dominated sort -----------------------------------------------------------------

def brute_force_fronts(points: np.ndarray, signs: np.ndarray) -> list[int | None]:
    """Fronts by definition: peel off the rows no remaining row beats on one objective
    while matching or beating it on all."""
    def beats(a, b):
        better = [s * (x - y) for x, y, s in zip(a, b, signs, strict=True)]
        return all(d >= 0 for d in better) and any(d > 0 for d in better)

    remaining = [i for i in range(len(points)) if not np.isnan(points[i]).any()]
    fronts: list[int | None] = [None] * len(points)
    level = 0
    while remaining:
        level += 1
        layer = [i for i in remaining if not any(beats(points[j], points[i]) for j in remaining)]
        for i in layer:
            fronts[i] = level
        remaining = [i for i in remaining if i not in layer]
    return fronts


@pytest.mark.parametrize("seed", range(6))
def test_fronts_match_brute_force_and_optuna(seed):
    import optuna

    rng = np.random.default_rng(seed)
    n, k = 40, 2 + seed % 2
    # coarse values: ties and duplicate runs happen
    points = rng.integers(0, 6, size=(n, k)).astype(np.float64)
    points[rng.choice(n, 3, replace=False), rng.integers(0, k)] = np.nan
    directions = ["maximize", "minimize", "maximize"][:k]
    objectives = [Objective(f"m{i}", d) for i, d in enumerate(directions)]
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])

    ranks = pareto.front_ranks(points, objectives)
    assert ranks == brute_force_fronts(points, signs)

    study = optuna.create_study(directions=directions)
    for row in points:
        if not np.isnan(row).any():
            study.add_trial(optuna.trial.create_trial(values=list(row)))
    optuna_front = sorted(tuple(t.values) for t in study.best_trials)
    assert optuna_front == sorted(tuple(points[i]) for i, r in enumerate(ranks) if r == 1)


def test_dominance_respects_each_direction():
    objectives = [Objective("corr_sharpe", "maximize"), Objective("corr_max_drawdown", "minimize")]
    assert pareto.dominates([1.0, 0.1], [0.5, 0.2], objectives)
    assert not pareto.dominates([1.0, 0.3], [0.5, 0.2], objectives)  # a trade-off
    assert not pareto.dominates([1.0, 0.1], [1.0, 0.1], objectives)  # equal: neither
    assert pareto.front_ranks(np.array([[1.0, 0.3], [0.5, 0.2], [0.4, 0.25]]),
                              objectives) == [1, 1, 2]


# --- the sweep summary ----------------------------------------------------------------------

RUNS = {  # job -> (corr_sharpe, bmc_mean, corr_max_drawdown)
    "0-cv-lgbm": (1.2, 0.010, 0.40),   # front: best sharpe
    "1-cv-lgbm": (0.8, 0.020, 0.30),   # front: best bmc, best drawdown
    "2-cv-lgbm": (0.7, 0.015, 0.35),   # dominated by 1
    "3-cv-lgbm": (1.0, 0.012, 0.38),   # front: no run beats it everywhere
}


def write_sweep(root, objectives=OBJECTIVES):
    (root / "multirun.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
        {"optimized_metric": dict(objectives),
         "hydra": {"sweeper": {"direction": list(objectives.values())}}})))
    for name, values in RUNS.items():
        run = root / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- model.params.num_leaves={10 + int(name[0])}\n")
        (run / "metrics.json").write_text(json.dumps(
            {**dict(zip(OBJECTIVES, values, strict=True)), "corr_mean": 0.01, "n_eras": 9}))
    failed = root / "4-cv-lgbm"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text("- model.params.num_leaves=99\n")
    (failed / "error.txt").write_text("model.num_boost_round=0: below the minimum 1\n")


def test_sweep_summary_shows_the_pareto_front(tmp_path, capsys):
    write_sweep(tmp_path)
    assert summary.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    front_table = printed[printed.index("Pareto front"):]
    assert {"0-cv-lgbm", "1-cv-lgbm", "3-cv-lgbm"} <= set(front_table.split())
    assert "2-cv-lgbm" not in front_table and "4-cv-lgbm" not in front_table

    front_md = (tmp_path / "summary.md").read_text().split("## Pareto front")[1]
    assert [line.split(" | ")[0].strip("| ") for line in front_md.splitlines()
            if line.startswith("| ") and "cv-lgbm" in line] == ["0-cv-lgbm", "3-cv-lgbm",
                                                                 "1-cv-lgbm"]
    table = pl.read_csv(tmp_path / "pareto.csv")
    assert dict(zip(table["name"], table["pareto_front"], strict=True)) == {
        "0-cv-lgbm": 1, "1-cv-lgbm": 1, "3-cv-lgbm": 1, "2-cv-lgbm": 2, "4-cv-lgbm": None}
    assert (tmp_path / "pareto.png").stat().st_size > 0
    # the ranked table still ranks by the first objective
    ranked = pl.read_csv(tmp_path / "summary.csv")
    assert ranked["name"][:4].to_list() == ["0-cv-lgbm", "3-cv-lgbm", "1-cv-lgbm", "2-cv-lgbm"]


def test_one_objective_writes_no_front(tmp_path):
    write_sweep(tmp_path, {"corr_sharpe": "maximize"})
    assert summary.main([str(tmp_path)]) == 0
    assert not (tmp_path / "pareto.csv").exists()
    assert "Pareto" not in (tmp_path / "summary.md").read_text()


def test_every_pair_of_objectives_is_drawn(tmp_path):
    write_sweep(tmp_path)
    frame = summary.collect(tmp_path)
    objectives = pareto.objectives(dict(OBJECTIVES))
    path = pareto.plot(frame, objectives, tmp_path / "plot.png")
    from PIL import Image

    width, height = Image.open(path).size
    assert width > 2.5 * height  # three panels side by side: the pairs of three objectives
    assert len(list(itertools.combinations(objectives, 2))) == 3
