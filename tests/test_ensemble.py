"""model=ensemble (any families, any targets) and neutralization on another feature set:
real small fits through run.py (in this process; a sweep through `python run.py -m`),
numerai-tools as the oracle for ranks and scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import SMALL_DATA, compose, error_line, read_metrics, run_cli, run_in_process

from numerlab.data import load_splits
from numerlab.data.dataset import Dataset
from numerlab.data.source import build_source, prepare
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext, load_model
from numerlab.models.ensemble import EnsembleModel, combine_per_era, compose_member, on_target

FAST_MEMBERS = ["model.overrides.lgbm={num_boost_round:40}",
                "model.overrides.xgboost={num_boost_round:40}",
                "model.overrides.mlp={d_hidden:16}", "trainer.max_epochs=1"]


def ensemble(**settings) -> EnsembleModel:
    """An EnsembleModel with conf/model/ensemble.yaml's settings where `settings` has none."""
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(compose(["model=ensemble"]).model, resolve=True)
    conf = {k: v for k, v in conf.items() if k not in ("_target_", "name")}
    return EnsembleModel(**{**conf, **settings})


def small(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*SMALL_DATA, f"data.dir={data_dir}", f"hydra.run.dir={run_dir}", *extra]


def combine_oracle(predictions: np.ndarray, weights: list[float], eras: np.ndarray,
                   method: str) -> np.ndarray:
    """numerai-tools ranks per era, weighted mean, ranked again."""
    from numerai_tools.scoring import gaussian, tie_kept_rank

    frame = pd.DataFrame(predictions.T, columns=[f"m{i}" for i in range(len(predictions))])
    frame["era"] = eras
    out = pd.Series(np.nan, index=frame.index)
    w = np.asarray(weights) / np.sum(weights)
    for _, rows in frame.groupby("era"):
        members = rows.drop(columns="era")
        ranked = tie_kept_rank(members)
        if method == "gaussian":
            ranked = gaussian(ranked)
        mixed = pd.DataFrame({"p": ranked.to_numpy() @ w}, index=rows.index)
        out[rows.index] = tie_kept_rank(mixed)["p"]
    return out.to_numpy()


def validation_data(data_dir: Path, *aux: str):
    cfg = compose([*SMALL_DATA, f"data.dir={data_dir}"])
    prepare(cfg.data)  # generated on first use
    target = {"name": "target", "aux": list(aux)}
    return load_splits(build_source(cfg.data), cfg.features, target)


# --- combining ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["rank", "gaussian"])
def test_combine_per_era_matches_numerai_tools_ranks(method):
    rng = np.random.default_rng(3)
    eras = np.repeat(["0001", "0002", "0003"], [50, 80, 31])
    predictions = rng.normal(size=(3, len(eras)))
    predictions[1, :10] = 0.5  # ties
    codes = np.unique(eras, return_inverse=True)[1]
    out = combine_per_era(predictions, [2, 1, 1], codes, 3, method)
    np.testing.assert_allclose(out, combine_oracle(predictions, [2, 1, 1], eras, method),
                               atol=1e-6)


def test_per_era_combine_differs_from_one_global_rank():
    # why predict_dataset exists: ranking across eras mixes eras of different spread
    rng = np.random.default_rng(0)
    eras = np.repeat([0, 1], 100)
    predictions = rng.normal(size=(2, 200)) * np.where(eras == 0, 1.0, 5.0)
    per_era = combine_per_era(predictions, [1, 1], eras, 2, "rank")
    global_ = combine_per_era(predictions, [1, 1], np.zeros(200, dtype=int), 1, "rank")
    assert not np.allclose(per_era, global_)


def test_on_target_fits_only_rows_where_the_target_is_known():
    rng = np.random.default_rng(1)
    aux = rng.normal(size=(10, 1)).astype(np.float32)
    aux[:4] = np.nan
    data = Dataset(ids=np.array([str(i) for i in range(10)], dtype=object),
                   eras=np.array(["1"] * 5 + ["2"] * 5, dtype=object),
                   features=rng.integers(0, 5, (10, 3), dtype=np.int8),
                   feature_names=["a", "b", "c"], target=np.zeros(10, dtype=np.float32),
                   target_name="target", aux=aux, aux_names=["target_x"])
    rows = on_target(data, "target_x")
    assert rows.target_name == "target_x" and len(rows) == 6
    np.testing.assert_array_equal(rows.target, aux[4:, 0])
    with pytest.raises(NumerlabError, match="target_y.*not loaded"):
        on_target(data, "target_y")


# --- building -----------------------------------------------------------------------------

def test_members_compose_from_conf_with_their_overrides():
    model = ensemble(members=["lgbm", "mlp", "mlp"],
                     overrides={"mlp": {"d_hidden": 256}, "2": ["lr=0.01"],
                                "lgbm": ["params.num_leaves=7"]})
    lgbm, mlp, mlp2 = model.member_configs
    assert lgbm["params"]["num_leaves"] == 7 and lgbm["num_boost_round"] == 300
    assert mlp["d_hidden"] == 256 and mlp["network"]["d_hidden"] == 256  # ${..d_hidden}
    assert mlp2["lr"] == 0.01 and mlp2["optimizer"]["lr"] == 0.01 and mlp["lr"] != 0.01
    assert model.weights == [1.0, 1.0, 1.0] and model.targets == [None, None, None]


@pytest.mark.parametrize("override", [
    r"model.overrides.mlp=[d_hidden\=256]",          # the `=` escaped for Hydra's grammar
    "model.overrides.mlp=['d_hidden=256']",
    "model.overrides.mlp={d_hidden:256}",
])
def test_command_line_forms_of_member_overrides(override):
    """The forms README gives for a member's overrides, through Hydra's own parser."""
    from numerlab.models.base import build_model

    model = build_model(compose(["model=ensemble", "model.members=[lgbm,mlp]", override]).model)
    assert model.member_configs[1]["d_hidden"] == 256
    assert model.member_configs[1]["network"]["d_hidden"] == 256


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"members": ["lgbm", "catboost"]}, r"'catboost' names no model config.*known: lgbm"),
    ({"members": ["lgbm", "ensemble"]}, "cannot be a member"),
    ({"members": ["lgbm", "xgboost"], "weights": [1, 2, 3]},
     r"model.weights has 3 entries for 2 members"),
    ({"members": ["lgbm", "xgboost"], "targets": ["target"]},
     r"model.targets has 1 entries for 2 members"),
    ({"members": ["lgbm"], "weights": [-1]}, r"model.weights\[0\]=-1 must be a number >= 0"),
    ({"members": ["lgbm"], "combine": "mean"}, r"model.combine='mean' .*rank, gaussian"),
    ({"members": ["lgbm"], "n_jobs": 0}, r"model.n_jobs=0 must be an integer >= 1"),
    ({"members": ["lgbm"], "targets": [3]},
     r"model.targets\[0\]=3 must be null or a target column name"),
    ({"members": ["lgbm"], "overrides": {"lgbm": {"no_such_key": 1}}},
     r"model.overrides.lgbm=.*no_such_key"),
    ({"members": ["lgbm"], "overrides": {"lgbm": ["num_boost_round=0"]}},
     r"ensemble member 0-lgbm: model.num_boost_round=0"),
    ({"members": []}, "non-empty list"),
])
def test_bad_ensemble_settings_are_one_line(kwargs, message):
    with pytest.raises(NumerlabError, match=message) as info:
        ensemble(**kwargs)
    assert "\n" not in str(info.value)


def test_compose_member_leaves_no_global_hydra_behind():
    from hydra.core.global_hydra import GlobalHydra

    compose_member("xgboost")
    assert not GlobalHydra.instance().is_initialized()


@pytest.fixture
def own_conf(tmp_path) -> Path:
    """A copy of conf/ where lgbm has 7 rounds and a model `tiny` exists."""
    import shutil

    from conftest import CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    lgbm = conf / "model" / "lgbm.yaml"
    lgbm.write_text(lgbm.read_text().replace("num_boost_round: 300", "num_boost_round: 7"))
    (conf / "model" / "tiny.yaml").write_text(lgbm.read_text().replace("name: lgbm",
                                                                        "name: tiny"))
    return conf


def test_members_compose_from_the_configs_the_running_hydra_app_has(own_conf):
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(own_conf), version_base="1.3"):
        assert compose_member("lgbm")["num_boost_round"] == 7
        assert compose_member("tiny")["name"] == "tiny"
    assert compose_member("lgbm")["num_boost_round"] == 300  # outside: numerlab's conf/


def test_members_compose_from_the_primary_config_source_a_hydra_job_records(own_conf):
    """A job whose HydraConfig is set but no GlobalHydra (a launcher's worker) composes
    from its `hydra.runtime.config_sources` main entry, not from numerlab's conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(own_conf), version_base="1.3"):
        job = hydra_compose(config_name="config", return_hydra_config=True)
    HydraConfig.instance().set_config(job)
    try:
        assert compose_member("lgbm")["num_boost_round"] == 7
        assert compose_member("tiny")["name"] == "tiny"
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.slow  # members fit in spawned processes
def test_parallel_fit_equals_sequential_fit(small_data_dir):
    splits = validation_data(small_data_dir)
    predictions = []
    for n_jobs in (1, 2):
        model = ensemble(members=["lgbm", "xgboost"], n_jobs=n_jobs,
                         overrides={"lgbm": {"num_boost_round": 20},
                                    "xgboost": {"num_boost_round": 20}})
        model.fit(splits.train, None, FitContext(seed=5, run_dir=small_data_dir.parent / "p"))
        predictions.append(model.member_predictions(splits.validation.features))
    np.testing.assert_allclose(predictions[0], predictions[1], rtol=0, atol=1e-6)
    assert not (predictions[0][0] == predictions[0][1]).all()


# --- through run.py -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, small_data_dir):
    run_dir = tmp_path_factory.mktemp("ens") / "run"
    proc = run_in_process(small(small_data_dir, run_dir, "model=ensemble",
                                "model.members=[lgbm,xgboost,mlp]", "model.weights=[2,1,1]",
                                *FAST_MEMBERS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.mark.slow
def test_ensemble_run_saves_members_and_combines_them_per_era(ensemble_run, small_data_dir):
    run_dir, _proc = ensemble_run
    for i, name in enumerate(["lgbm", "xgboost", "mlp"]):
        assert (run_dir / f"model/members/{i}-{name}/numerlab_model.json").is_file()
    splits = validation_data(small_data_dir)
    validation = splits.validation
    members = [load_model(run_dir / f"model/members/{i}-{name}")[0]
               for i, name in enumerate(["lgbm", "xgboost", "mlp"])]
    raw = np.stack([m.predict(validation.features) for m in members])
    saved = pl.read_parquet(run_dir / "predictions/validation.parquet")
    assert saved["id"].to_list() == validation.ids.tolist()
    expected = combine_oracle(raw, [2, 1, 1], validation.eras.astype(str), "rank")
    np.testing.assert_allclose(saved["prediction"].to_numpy(), expected, atol=1e-6)
    assert read_metrics(run_dir)["model"] == "ensemble"


@pytest.mark.slow
def test_members_parquet_scores_each_member_on_the_main_target(ensemble_run, small_data_dir):
    from numerai_tools.scoring import numerai_corr

    run_dir, _ = ensemble_run
    report = pl.read_parquet(run_dir / "members.parquet")
    assert report.columns == ["member", "target", "weight", "corr_mean", "corr_sharpe",
                              "mmc_mean", "corr_with_ensemble"]
    assert report["member"].to_list() == ["0-lgbm", "1-xgboost", "2-mlp"]
    np.testing.assert_allclose(report["weight"].to_numpy(), [0.5, 0.25, 0.25])
    validation = validation_data(small_data_dir).validation
    lgbm = load_model(run_dir / "model/members/0-lgbm")[0]
    frame = pd.DataFrame({"era": validation.eras.astype(str),
                          "p": lgbm.predict(validation.features),
                          "target": validation.target})
    per_era = [numerai_corr(rows[["p"]], rows["target"])["p"]
               for _, rows in frame.groupby("era")]
    assert report["corr_mean"][0] == pytest.approx(np.mean(per_era), abs=1e-9)
    assert ((report["corr_with_ensemble"] > -1) & (report["corr_with_ensemble"] <= 1)).all()


@pytest.mark.slow
def test_saved_ensemble_loads_and_predicts_live_like_the_run(ensemble_run, small_data_dir):
    run_dir, _ = ensemble_run
    model, names = load_model(run_dir / "model")
    live = validation_data(small_data_dir).live
    assert names == live.feature_names
    live_saved = pl.read_parquet(run_dir / "predictions/live.parquet")
    np.testing.assert_allclose(model.predict(live.features), live_saved["prediction"],
                               atol=1e-6)


@pytest.mark.slow
def test_multi_target_members_fit_their_own_targets(tmp_path, small_data_dir):
    run_dir = tmp_path / "multi"
    # target_claudia_20 is NaN in the first training eras: that member fits the rest
    proc = run_in_process(small(small_data_dir, run_dir, "model=ensemble",
                                "model.members=[lgbm,lgbm]",
                                "model.targets=[target,target_claudia_20]",
                                "model.overrides.lgbm={num_boost_round:40}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = pl.read_parquet(run_dir / "members.parquet")
    assert report["target"].to_list() == ["target", "target_claudia_20"]
    meta = json.loads((run_dir / "model/ensemble.json").read_text())
    assert [m["target"] for m in meta["members"]] == ["target", "target_claudia_20"]
    splits = validation_data(small_data_dir, "target_claudia_20")
    a, b = (load_model(run_dir / f"model/members/{i}-lgbm")[0] for i in (0, 1))
    assert not np.allclose(a.predict(splits.validation.features),
                           b.predict(splits.validation.features))


@pytest.mark.slow
def test_target_ensemble_experiment_reports_each_target(tmp_path, small_data_dir):
    run_dir = tmp_path / "targets"
    proc = run_in_process(small(small_data_dir, run_dir, "experiment=target_ensemble",
                                "model.overrides.lgbm={num_boost_round:30}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = pl.read_parquet(run_dir / "members.parquet")
    assert report["target"].to_list() == ["target", "target_victor_20", "target_teager2b_20",
                                          "target_rowan_20"]
    assert report["corr_mean"].is_not_null().all()


def test_a_member_that_fails_to_fit_is_named_and_nothing_is_written(tmp_path, small_data_dir):
    run_dir = tmp_path / "fails"
    proc = run_in_process(small(small_data_dir, run_dir, "model=ensemble",
                                "model.members=[lgbm,xgboost]",
                                "model.overrides.lgbm={num_boost_round:20}",
                                "model.overrides.xgboost={params:{objective:no_such_objective}}"))
    line = error_line(proc)
    # refused when the member's settings are checked, before any data is read
    assert line.startswith("error: ensemble member 1-xgboost: XGBoost rejected model")
    assert "no_such_objective" in line and "[bt]" not in line
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.members=[lgbm,lightgbm]"], "'lightgbm' names no model config"),
    (["model.members=[lgbm,xgboost]", "model.weights=[1]"], "model.weights has 1 entries"),
    (["model.members=[lgbm,xgboost]", "model.targets=[target]"], "model.targets has 1 entries"),
    (["model.members=[lgbm]", "model.targets=[target_nope]"], "unknown target 'target_nope'"),
])
def test_bad_ensemble_input_exits_2_with_one_line(tmp_path, small_data_dir, overrides, message):
    proc = run_in_process(small(small_data_dir, tmp_path / "bad", "model=ensemble", *overrides))
    error_line(proc)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in proc.stderr


# --- neutralization on another feature set --------------------------------------------------

def test_loader_reads_only_the_missing_neutralization_columns(small_data_dir):
    cfg = compose([*SMALL_DATA, f"data.dir={small_data_dir}"])
    prepare(cfg.data)
    meta = json.loads((small_data_dir / "features.json").read_text())
    splits = load_splits(build_source(cfg.data), cfg.features, cfg.target,
                         extra_features={"set": "medium", "key": "postprocess.features"})
    small_set, medium = meta["feature_sets"]["small"], meta["feature_sets"]["medium"]
    for data in (splits.validation, splits.live):
        assert data.feature_names == small_set
        assert data.extra_names == [c for c in medium if c not in small_set]
        assert data.postprocess_columns == medium
    assert splits.train.extra_names == []
    with pytest.raises(NumerlabError, match=r"postprocess.features: .*'huge'.*small, medium"):
        load_splits(build_source(cfg.data), cfg.features, cfg.target,
                    extra_features={"set": "huge"})


@pytest.mark.slow
def test_neutralize_on_another_feature_set_matches_numerai_tools(tmp_path, small_data_dir):
    from numerai_tools.scoring import neutralize

    run_dir = tmp_path / "neutral"
    proc = run_in_process(small(small_data_dir, run_dir, "model.num_boost_round=40",
                                "postprocess=neutralize", "postprocess.proportion=0.5",
                                "postprocess.features=medium"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = compose([*SMALL_DATA, f"data.dir={small_data_dir}"])
    medium_cfg = {"set": "medium", "columns": None}
    # medium, loaded independently
    splits = load_splits(build_source(cfg.data), medium_cfg, cfg.target)
    model, names = load_model(run_dir / "model")
    small_index = [splits.feature_names.index(n) for n in names]
    raw = model.predict(np.ascontiguousarray(splits.validation.features[:, small_index]))
    eras = splits.validation.eras.astype(str)
    saved = pl.read_parquet(run_dir / "predictions/validation.parquet")
    assert saved["id"].to_list() == splits.validation.ids.tolist()
    for era in np.unique(eras):
        rows = eras == era
        expected = neutralize(pd.DataFrame({"p": raw[rows].astype(np.float64)}),
                              pd.DataFrame(splits.validation.features[rows].astype(float)),
                              proportion=0.5)["p"].to_numpy()
        np.testing.assert_allclose(saved["prediction"].to_numpy()[rows], expected, atol=1e-9)


def test_neutralizing_on_an_unknown_feature_set_lists_the_sets(tmp_path, small_data_dir):
    proc = run_in_process(small(small_data_dir, tmp_path / "bad", "model.num_boost_round=5",
                                "postprocess=neutralize", "postprocess.features=huge"))
    error_line(proc)
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: postprocess.features: features.json has no feature set 'huge' "
        "(available: small, medium, all)")
    assert not (tmp_path / "bad" / "metrics.json").exists()


# --- sweeps --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_sweep_over_ensemble_weights_ranks_its_jobs_and_compares(tmp_path, small_data_dir):
    """`-m` over an ensemble's weights: one job per value, each a full ensemble run with its
    members.parquet, ranked in summary.csv and named by the weights in task=compare."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *SMALL_DATA, f"data.dir={small_data_dir}", f"hydra.sweep.dir={sweep}",
                    "model=ensemble", "model.members=[lgbm,xgboost]",
                    "model.overrides.lgbm={num_boost_round:30}",
                    "model.overrides.xgboost={num_boost_round:30}",
                    "model.weights=[1,0],[0,1]"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pl.read_csv(sweep / "summary.csv")
    assert summary.height == 2 and summary["corr_sharpe"].is_sorted(descending=True)
    runs = {row["overrides"]: Path(row["run_dir"]) for row in summary.iter_rows(named=True)}
    assert set(runs) == {"model.weights=[1,0]", "model.weights=[0,1]"}
    # a weight of 0 leaves the other member alone: the ensemble's validation CORR is that
    # member's own (its ranks are the ensemble's ranks)
    for overrides, member in (("model.weights=[1,0]", 0), ("model.weights=[0,1]", 1)):
        metrics = read_metrics(runs[overrides])
        members = pl.read_parquet(runs[overrides] / "members.parquet")
        assert members["weight"].to_list()[member] == 1.0
        assert metrics["corr_mean"] == pytest.approx(members["corr_mean"][member], abs=1e-12)

    report = tmp_path / "compare"
    proc = run_cli(["task=compare", f"runs={sweep}", f"hydra.run.dir={report}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pl.read_csv(report / "compare.csv")
    assert set(table["run"].to_list()) == {"model.weights=[1,0]", "model.weights=[0,1]"}
