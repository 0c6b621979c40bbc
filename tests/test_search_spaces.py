"""Search spaces: every key an Optuna space (conf/hparams_search/) or a W&B sweep (sweeps/)
tunes is a key of the composed config, and the values at the ends of each range compose.
Parsed with the real hydra-optuna-sweeper and the real W&B agent's argument builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONF_DIR, ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

MODELS = ["lgbm", "xgboost", "mlp", "resnet", "tabnet"]
SWEEPS_DIR = ROOT / "sweeps"


def compose_with_hydra(overrides: list[str]):
    """conf/ composed with its `hydra` node, as `python run.py -m ...` sees it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def ends(distribution) -> list:
    """The values at both ends of a distribution (each choice of a categorical one)."""
    from optuna.distributions import CategoricalDistribution  # optuna: not when collecting

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def corners(space: dict[str, list]) -> list[dict[str, Any]]:
    """Value sets that together give every key each of its end values."""
    width = max(len(values) for values in space.values())
    return [{key: values[i % len(values)] for key, values in space.items()}
            for i in range(width)]


def optuna_space(model: str):
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    cfg = compose_with_hydra([f"hparams_search={model}_optuna"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    distributions, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    return cfg, distributions, fixed


@pytest.mark.parametrize("model", MODELS)
def test_optuna_space_tunes_keys_of_the_model(model: str):
    cfg, distributions, fixed = optuna_space(model)
    assert cfg.hydra.runtime.choices.model == model
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper.study_name == f"{model}_optuna"
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "study"  # conf/hydra/sweeper/
    assert (cfg.hydra.sweeper.n_trials, cfg.hydra.sweeper.storage) == (20, None)
    assert not fixed and len(distributions) >= 4
    missing = [key for key in distributions if OmegaConf.select(cfg, key, default=None) is None]
    assert not missing, f"{model}_optuna tunes keys conf/model/{model}.yaml lacks: {missing}"
    for values in corners({key: ends(d) for key, d in distributions.items()}):
        # the sweeper hands a trial to the job as `key=value` overrides
        composed = compose_with_hydra([f"model={model}", *(f"{k}={v}" for k, v in values.items())])
        for key, value in values.items():
            assert OmegaConf.select(composed, key) == value


@pytest.mark.parametrize("model", MODELS)
def test_optuna_space_optimizes_the_root_default_it_does_not_restate(model: str):
    """A search option sets optimized_metric only to differ from conf/config.yaml's (the
    root config lets it win: `_self_` first); these use the default."""
    text = (CONF_DIR / "hparams_search" / f"{model}_optuna.yaml").read_text()
    assert "optimized_metric" not in yaml.safe_load(text)
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["optimized_metric"]
    assert compose_with_hydra([f"hparams_search={model}_optuna"]).optimized_metric == root


def test_optuna_space_sampler_can_be_switched():
    """The spaces leave the sampler to hydra/sweeper/sampler: seeded or swapped from the
    command line, with the TPE default unseeded so a resumed study does not repeat."""
    cfg = compose_with_hydra(["hparams_search=lgbm_optuna"])
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert cfg.hydra.sweeper.sampler.seed is None
    cfg = compose_with_hydra(["hparams_search=lgbm_optuna", "hydra/sweeper/sampler=random",
                              "hydra.sweeper.sampler.seed=3"])
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert cfg.hydra.sweeper.sampler.seed == 3


def test_neural_batch_sizes_fit_the_default_data():
    """Every batch size a space can pick fits the default synthetic training rows, and
    TabNet's ghost batches fit in every batch."""
    cfg = compose_with_hydra([])
    synthetic = cfg.data.synthetic
    train_rows = synthetic.n_train_eras * synthetic.rows_per_era
    for model in ("mlp", "resnet", "tabnet"):
        _, distributions, _ = optuna_space(model)
        assert max(ends(distributions["model.batch_size"])) <= train_rows
    _, tabnet, _ = optuna_space("tabnet")
    assert max(ends(tabnet["model.virtual_batch_size"])) <= min(ends(tabnet["model.batch_size"]))


# --- W&B sweeps -----------------------------------------------------------------------------

WANDB_DISTRIBUTIONS = {"int_uniform", "uniform", "log_uniform_values", "categorical"}


def wandb_values(spec: dict) -> list:
    """End values of one W&B sweep parameter."""
    if "values" in spec:
        return list(spec["values"])
    assert spec["distribution"] in WANDB_DISTRIBUTIONS, spec
    assert spec["min"] < spec["max"], spec
    if spec["distribution"] == "log_uniform_values":
        assert spec["min"] > 0, spec
    return [spec["min"], spec["max"]]


def agent_argv(sweep: dict, values: dict) -> list[str]:
    """The command `wandb agent` runs for one set of values: the file's `command` with its
    macros expanded by wandb's own argument builder (as wandb_agent.Agent._command_run does)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    argv: list[str] = []
    for chunk in sweep["command"]:
        argv += macros[chunk[2:-1]] if chunk.startswith("${") else [chunk]
    return argv


@pytest.mark.parametrize("model", MODELS)
def test_wandb_sweep_runs_run_py_with_keys_it_accepts(model: str):
    sweep = yaml.safe_load((SWEEPS_DIR / f"{model}.yaml").read_text())
    assert sweep["program"] == "run.py" and (ROOT / sweep["program"]).is_file()
    assert sweep["method"] == "bayes"
    assert sweep["metric"] == {"name": "corr_sharpe", "goal": "maximize"}
    assert sweep["command"][:4] == ["${env}", "${interpreter}", "${program}", f"model={model}"]
    assert sweep["command"][-1] == "${args_no_hyphens}"
    space = {key: wandb_values(spec) for key, spec in sweep["parameters"].items()}
    for values in corners(space):
        argv = agent_argv(sweep, values)
        assert argv[:3] == ["/usr/bin/env", "python", "run.py"]
        composed = compose_with_hydra(argv[3:])
        assert composed.hydra.runtime.choices.model == model
        for key, value in values.items():
            assert OmegaConf.select(composed, key) == value


@pytest.mark.parametrize("model", MODELS)
def test_wandb_sweep_matches_the_optuna_space(model: str):
    """Both doors tune the same keys, so a W&B sweep and an Optuna study are comparable."""
    sweep = yaml.safe_load((SWEEPS_DIR / f"{model}.yaml").read_text())
    _, distributions, _ = optuna_space(model)
    assert set(sweep["parameters"]) == set(distributions)


def test_every_model_has_both_spaces():
    assert sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")) == sorted(MODELS)
    names = sorted(p.stem.removesuffix("_optuna")
                   for p in (CONF_DIR / "hparams_search").glob("*_optuna.yaml"))
    assert names == sorted(MODELS)
    assert all(Path(CONF_DIR / "model" / f"{m}.yaml").is_file() for m in MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_wandb_sweep_ranges_end_where_the_optuna_space_ends(model: str):
    """The two files restate one space in two formats: each key's lowest and highest value
    agree, so neither door searches outside the other's range."""
    sweep = yaml.safe_load((SWEEPS_DIR / f"{model}.yaml").read_text())
    _, distributions, _ = optuna_space(model)
    for key, spec in sweep["parameters"].items():
        wandb_ends, optuna_ends = wandb_values(spec), ends(distributions[key])
        assert (min(wandb_ends), max(wandb_ends)) == (min(optuna_ends), max(optuna_ends)), key
