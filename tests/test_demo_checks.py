"""Mistakes said in numerlab's words, before any data is read: a model key no model takes (on
every model family, also those whose class takes any keyword), a network trained for no epoch;
and `--help` offering only groups a user chooses from."""

from __future__ import annotations

import pytest
from conftest import SMALL_DATA, error_line, run_in_process


def _fails_before_data(args: list[str], tmp_path) -> str:
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    # the small data: where the mistake goes unnoticed, the run ends soon (and fails here)
    line = error_line(run_in_process([*SMALL_DATA, *args, f"data.dir={data_dir}",
                                      f"hydra.run.dir={run_dir}"]))
    assert not data_dir.exists(), "the data was generated before the mistake was found"
    return line


@pytest.mark.parametrize("model", ["lgbm", "xgboost", "mlp", "resnet", "tabnet"])
def test_a_misspelled_model_key_is_one_line_naming_the_close_key(model, tmp_path):
    key = "num_boost_rounds" if model in ("lgbm", "xgboost") else "max_epoch"
    close = {"lgbm": "num_boost_round", "xgboost": "num_boost_round"}.get(model)
    line = _fails_before_data([f"model={model}", f"+model.{key}=5"], tmp_path)
    assert f"model.{key} is not a setting of model" in line, line
    if close:
        assert f"did you mean model.{close}?" in line, line


@pytest.mark.parametrize("model, key, close", [("mlp", "lrr", "lr"),
                                               ("tabnet", "n_step", "n_steps"),
                                               ("resnet", "d_mian", "d_main")])
def test_a_network_hyperparameter_typo_names_the_hyperparameter(model, key, close, tmp_path):
    # the network classes take **hyperparameters: a key counts only if the config reads it
    line = _fails_before_data([f"model={model}", f"+model.{key}=3"], tmp_path)
    assert f"model.{key} is not a setting of model (did you mean model.{close}?" in line, line


def test_network_hyperparameters_the_config_reads_are_settings(tmp_path):
    from conftest import compose

    from numerlab.models.base import build_model

    for model in ("mlp", "resnet", "tabnet"):
        cfg = compose([f"model={model}", "model.lr=0.01", "model.weight_decay=0.0"])
        built = build_model(cfg.model)
        assert built.config["optimizer"]["lr"] == 0.01


@pytest.mark.parametrize("epochs", [0, -1])
def test_a_network_trained_for_no_epoch_is_refused(epochs, tmp_path):
    line = _fails_before_data(["model=mlp", f"trainer.max_epochs={epochs}"], tmp_path)
    assert line == f"error: trainer.max_epochs={epochs} must be null or an integer >= 1", line


def test_help_lists_the_groups_a_user_chooses_not_the_networks_shared_base():
    proc = run_in_process(["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    groups = [line.split(":")[0] for line in proc.stdout.split("== Configuration groups ==")[1]
              .split("== Config ==")[0].splitlines() if ": " in line]
    assert "model" in groups and "trainer" in groups, proc.stdout[:2000]
    assert not any(g.startswith("model/") for g in groups), groups


@pytest.mark.parametrize("model", ["mlp", "resnet", "tabnet"])
def test_a_resolved_network_config_is_checked_by_its_parts_parameters(model):
    # params.yaml (the DVC door) and an ensemble's members hold configs with no
    # interpolation left: a key must then be a parameter of the network or optimizer
    from conftest import compose
    from omegaconf import OmegaConf

    from numerlab.errors import NumerlabError
    from numerlab.models.base import build_model

    def resolved(overrides):
        cfg = compose([f"model={model}", *overrides]).model
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))

    build_model(resolved([]))  # every key of conf/model/<model>.yaml is taken
    with pytest.raises(NumerlabError, match=r"^model\.num_boost_rounds is not a setting"):
        build_model(resolved(["+model.num_boost_rounds=5"]))
