"""One place per fact: what the DVC stages read is what dvc.yaml declares; row alignment is by
id, not by the order of a file's rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FAST_GBDT, ROOT, SMALL_DATA, compose

from numerlab import stages
from numerlab.cli import run_job


def declared_params(stage: str) -> set[str]:
    specs = {}
    for path in (ROOT / "dvc.yaml", ROOT / "pipelines" / "cv" / "dvc.yaml"):
        specs.update(yaml.safe_load(path.read_text())["stages"])
    spec = specs[stage]
    return {p if isinstance(p, str) else next(iter(p)) for p in spec.get("params", [])}


def covered(key: str, declared: set[str]) -> bool:
    """`key` is declared itself or under a declared parent (`model` covers `model._target_`)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1))


def test_every_key_a_stage_requires_is_declared_in_dvc_yaml():
    for stage, keys in stages.REQUIRED.items():
        declared = declared_params(stage)
        for key in keys:
            assert covered(key, declared), f"stage {stage} reads {key}; dvc.yaml lacks it"


def test_the_features_manifest_records_exactly_the_declared_keys():
    assert set(stages.FEATURE_PARAMS) == declared_params("features")


@pytest.mark.slow
def test_meta_model_rows_in_any_order_give_the_same_scores(tmp_path, small_data_dir):
    from numerlab import data

    data.prepare(compose([*SMALL_DATA, f"data.dir={small_data_dir}"]).data)
    shuffled = tmp_path / "shuffled"
    shutil.copytree(small_data_dir, shuffled)
    meta = pd.read_parquet(shuffled / "meta_model.parquet")
    meta.sample(frac=1.0, random_state=0).to_parquet(shuffled / "meta_model.parquet")
    assert not pd.read_parquet(shuffled / "meta_model.parquet").index.equals(meta.index)

    def run(data_dir: Path, name: str) -> dict:
        return run_job(compose(["data=v5", f"data.dir={data_dir}", "data.era_stride=1",
                                *FAST_GBDT]), tmp_path / name)

    plain, mixed = run(small_data_dir, "plain"), run(shuffled, "mixed")
    assert plain["mmc_n_eras"] > 0
    for key in ("corr_mean", "mmc_mean", "mmc_sharpe", "fnc_mean", "max_feature_exposure"):
        assert plain[key] == mixed[key], key


@pytest.mark.slow
def test_each_stage_runs_on_only_the_params_dvc_yaml_gives_it(tmp_path, monkeypatch,
                                                                small_data_dir):
    """A stage that read a key its dvc.yaml entry does not declare would not rerun when that
    key changes: each stage here gets a params file holding only its declared keys."""
    from omegaconf import OmegaConf

    full = OmegaConf.to_container(
        compose([*SMALL_DATA, *FAST_GBDT, f"data.dir={small_data_dir}"]), resolve=True)
    monkeypatch.chdir(tmp_path)
    for stage in ("data", "features", "train", "predict", "evaluate"):
        only: dict = {}
        for key in declared_params(stage):
            node, parts = full, key.split(".")
            for part in parts:
                node = node[part]
            target = only
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = node
        path = tmp_path / f"params-{stage}.yaml"
        path.write_text(yaml.safe_dump(only))
        assert stages.main([stage, "--params", str(path)]) == 0, stage
    assert (tmp_path / "artifacts" / "metrics.json").is_file()


def test_load_keys_are_derived_from_the_keys_the_pipeline_falls_back_to():
    """conf/config.yaml's `load` interpolates model.targets and postprocess.*; a config
    without `load` is read at those keys (pipeline.LOAD_DERIVED_FROM): both say the same."""
    from omegaconf import OmegaConf

    from numerlab import pipeline

    cfg = compose(["model=ensemble", "model.members=[lgbm,lgbm]",
                   "model.targets=[null,target_victor_20]", "postprocess=neutralize",
                   "postprocess.features=medium"])
    assert set(cfg.load) == set(pipeline.LOAD_DERIVED_FROM)
    without = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "load"])
    for key in pipeline.LOAD_DERIVED_FROM:
        assert pipeline.loaded(cfg, key) == pipeline.loaded(without, key), key
        assert pipeline.loaded(cfg, key) == OmegaConf.to_container(
            cfg, resolve=True)["load"][key]
    assert pipeline.target_config(cfg)["aux"] == ["target_victor_20"]
    assert pipeline.postprocess_columns(without)["set"] == "medium"
