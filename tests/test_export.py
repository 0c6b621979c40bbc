"""Model upload export: real small fits saved as run dirs, exported, then unpickled and run
in a fresh Python where numerlab (and the libraries the upload image may lack) cannot be
imported, compared with the live predictions numerlab itself computes for the same rows."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy.special import ndtri
from scipy.stats import rankdata

from numerlab import export, pipeline, postprocess, scoring
from numerlab.data.dataset import Dataset
from numerlab.data.synthetic import feature_names
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext, load_model, save_model
from numerlab.models.ensemble import EnsembleModel
from numerlab.models.gbdt import LGBMModel, XGBModel
from numerlab.postprocess import PostProcess
from numerlab.registry import build

N_FEATURES = 12
LIVE_ROWS = 400
MODEL_FEATURES = feature_names(N_FEATURES)
# features.json columns the models never see, in live_features as in Numerai's
EXTRA_FEATURES = feature_names(N_FEATURES + 3)[N_FEATURES:]
# a features.json set of model columns (reordered) and columns the models do not use
OTHER_SET = [MODEL_FEATURES[4], MODEL_FEATURES[0], *EXTRA_FEATURES]
FEATURE_SETS = {"model": MODEL_FEATURES, "other": OTHER_SET,
                "all": [*MODEL_FEATURES, *EXTRA_FEATURES]}
NONE = {"_target_": "numerlab.postprocess.NoPostProcess"}
NEUTRALIZE = "numerlab.postprocess.Neutralize"
# as a run's saved config holds them: every key of conf/postprocess/neutralize.yaml
NEUTRALIZE_ALL = {"_target_": NEUTRALIZE, "proportion": 1.0, "columns": None, "features": None}
# a subset, in an order other than the model's, at half strength
NEUTRALIZE_SOME = {"_target_": NEUTRALIZE, "proportion": 0.5,
                   "columns": feature_names(N_FEATURES)[5::-2], "features": None}
NEUTRALIZE_OTHER_SET = {"_target_": NEUTRALIZE, "proportion": 1.0, "features": "other",
                        "columns": None}
# What the upload image does not need: numerlab and its config, data and training stack.
BLOCKED = ["numerlab", "polars", "hydra", "omegaconf", "lightning", "pytorch_lightning"]
# LightGBM and XGBoost depend on scipy; a torch-only image need not have it.
BLOCKED_FOR = {"lgbm": BLOCKED, "xgboost": BLOCKED, "mlp": [*BLOCKED, "scipy"],
               "tabnet": [*BLOCKED, "scipy"]}
NETWORKS = {  # TabNet: batch norms and autograd Functions of numerlab's, pickled by value
    "mlp": {"_target_": "numerlab.models.nn.modules.MLP", "n_layers": 2, "d_hidden": 16},
    "tabnet": {"_target_": "numerlab.models.nn.modules.TabNet", "n_steps": 2,
               "virtual_batch_size": 64, "mask_type": "entmax"},
}


# -- data and models ------------------------------------------------------------------------


def make_dataset(n_eras: int, rows: int, seed: int, era: str | None = None) -> Dataset:
    """int8 bins 0..4 with a partly nonlinear signal in the first five features."""
    rng = np.random.default_rng(seed)
    n = n_eras * rows
    features = rng.integers(0, 5, size=(n, N_FEATURES), dtype=np.int8)
    z = (features.astype(np.float32) - 2) / 2
    latent = z[:, 0] + z[:, 1] - z[:, 2] + z[:, 3] * z[:, 4] + 0.5 * rng.standard_normal(n)
    target = (np.digitize(latent, np.quantile(latent, [0.05, 0.25, 0.75, 0.95])) / 4)
    eras = [era] * n if era else np.repeat([f"{e:04d}" for e in range(n_eras)], rows)
    return Dataset(
        ids=np.array([f"n{seed:03d}{i:012x}" for i in range(n)], dtype=object),
        eras=np.asarray(eras, dtype=object),
        features=features,
        feature_names=feature_names(N_FEATURES),
        target=target.astype(np.float32) if not era else np.full(n, np.nan, np.float32),
        target_name="target",
    )


def fit_model(name: str, train: Dataset, work: Path):
    if name == "lgbm":
        model = LGBMModel({"objective": "regression", "learning_rate": 0.1, "num_leaves": 15,
                           "max_bin": 5, "num_threads": 1}, num_boost_round=30,
                          early_stopping_rounds=None)
    elif name == "xgboost":
        model = XGBModel({"eta": 0.1, "max_depth": 4, "max_bin": 5, "nthread": 1},
                         num_boost_round=20, early_stopping_rounds=None)
    else:
        from conftest import compose
        from omegaconf import OmegaConf

        from numerlab.models.base import build_model

        model_cfg = compose([f"model={name}", "model.lr=3e-3", "model.batch_size=128",
                             "model.eval_batch_size=256", "model.patience=null"]).model
        model_cfg.network = OmegaConf.merge(model_cfg.network, NETWORKS[name])
        model = build_model(model_cfg)
    trainer = {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "logger": False,
               "enable_progress_bar": False, "enable_model_summary": False,
               "enable_checkpointing": False, "num_sanity_val_steps": 0}
    model.fit(train, None, FitContext(seed=0, run_dir=work, trainer=trainer))
    return model


@pytest.fixture(scope="module")
def live() -> Dataset:
    return make_dataset(1, LIVE_ROWS, seed=7, era="X")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    train = make_dataset(20, 100, seed=0)
    work = tmp_path_factory.mktemp("fits")
    return {name: fit_model(name, train, work / name)
            for name in ("lgbm", "xgboost", "mlp", "tabnet")}


def make_run(run_dir: Path, model, pp_cfg: dict) -> Path:
    """A run dir as a finished `python run.py` leaves it: model/ and .hydra/config.yaml,
    whose data.dir holds a features.json."""
    save_model(model, run_dir / "model", feature_names(N_FEATURES))
    (run_dir / ".hydra").mkdir(parents=True)
    data_dir = run_dir.parent / f"{run_dir.name}-data"
    data_dir.mkdir()
    (data_dir / "features.json").write_text(json.dumps(
        {"feature_sets": FEATURE_SETS, "targets": ["target"]}))
    OmegaConf.save(OmegaConf.create({"seed": 0, "postprocess": pp_cfg,
                                     "data": {"dir": str(data_dir)},
                                     "scoring": {"fnc": True, "exposure": True}}),
                   run_dir / ".hydra" / "config.yaml")
    return run_dir


def extra_features(live: Dataset) -> np.ndarray:
    """int8 (n, 3) values of EXTRA_FEATURES: the first follows model feature 0 (what the
    models predict from), so neutralizing against it changes the predictions."""
    rng = np.random.default_rng(11)
    extra = rng.integers(0, 5, size=(len(live), len(EXTRA_FEATURES)), dtype=np.int8)
    extra[:, 0] = np.clip(live.features[:, 0] + rng.integers(-1, 2, len(live)), 0, 4)
    return extra


def with_postprocess_columns(live: Dataset, names: list[str]) -> Dataset:
    """`live` as the loader gives it for `postprocess.features`: the set's columns that
    are not model features loaded beside them (`extra_features`)."""
    return dataclasses.replace(live, extra_features=extra_features(live),
                               extra_names=list(EXTRA_FEATURES), postprocess_columns=names)


def live_frame(live: Dataset) -> pd.DataFrame:
    """Numerai's live_features: indexed by id, feature columns in another order than the
    model's, features the model does not use and the era/data_type columns."""
    columns = {name: live.features[:, j] for j, name in enumerate(live.feature_names)}
    columns = dict(reversed(list(columns.items())))
    columns["feature_not_in_the_model"] = np.zeros(len(live), dtype=np.int8)
    columns.update(zip(EXTRA_FEATURES, extra_features(live).T, strict=True))
    frame = pd.DataFrame(columns, index=pd.Index(live.ids.astype(str), name="id"))
    frame.insert(0, "era", live.eras.astype(str))
    frame.insert(1, "data_type", "live")
    return frame


def numerlab_live_predictions(run_dir: Path, live: Dataset,
                              postprocess_columns: list[str] | None = None) -> pd.Series:
    """The ranked live predictions of numerlab's own pipeline for the saved run, by id
    (`postprocess_columns`: the columns the run's `postprocess.features` names)."""
    model, names = load_model(run_dir / "model")
    assert names == live.feature_names
    if postprocess_columns is not None:
        live = with_postprocess_columns(live, postprocess_columns)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    postprocess = build(cfg.postprocess, "postprocess", PostProcess)
    _, frame = pipeline.predict_splits(postprocess, model, live, live, None)
    return pd.Series(frame["prediction"].to_numpy(), index=frame["id"].to_list())


UPLOAD_RUNNER = textwrap.dedent("""
    import importlib.abc, inspect, sys

    pickle_path, live_path, out_path, blocked = sys.argv[1:5]
    blocked = blocked.split(",")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in blocked:
        try:
            __import__(name)
        except ImportError:
            continue
        sys.exit(f"{name} is importable")

    import pandas as pd  # as numerai-predict does: pd.read_pickle, then one call per era

    predict = pd.read_pickle(pickle_path)
    assert len(inspect.signature(predict).parameters) == 2, inspect.signature(predict)
    live_features = pd.read_pickle(live_path)
    benchmarks = pd.DataFrame({"v53_lgbm_ender20": 0.5}, index=live_features.index)
    out = predict(live_features, benchmarks)
    assert type(out) is pd.DataFrame, type(out)
    out.to_pickle(out_path)
""")


def run_like_numerai(pickle_path: Path, live: pd.DataFrame, blocked: list[str],
                     work: Path) -> pd.DataFrame:
    live.to_pickle(work / "live.pkl")
    (work / "runner.py").write_text(UPLOAD_RUNNER)
    done = subprocess.run(
        [sys.executable, str(work / "runner.py"), str(pickle_path), str(work / "live.pkl"),
         str(work / "out.pkl"), ",".join(blocked)],
        cwd=work, env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_pickle(work / "out.pkl")


# -- the exported pickle, run as Numerai runs it -----------------------------------------------


@pytest.mark.slow  # the pickle in a fresh process
@pytest.mark.parametrize(("name", "pp_cfg"), [
    ("lgbm", NONE), ("lgbm", NEUTRALIZE_SOME), ("xgboost", NEUTRALIZE_ALL),
    ("mlp", NONE), ("mlp", NEUTRALIZE_SOME), ("tabnet", NONE),
])
def test_pickle_runs_without_numerlab_and_matches_numerlab(name, pp_cfg, models, live,
                                                           tmp_path):
    run_dir = make_run(tmp_path / "run", models[name], pp_cfg)
    expected = numerlab_live_predictions(run_dir, live)
    assert expected.nunique() > LIVE_ROWS // 2  # a real model, not a constant

    out_path = export.export_model(run_dir, tmp_path / "upload" / "model.pkl")
    assert out_path == tmp_path / "upload" / "model.pkl"
    assert [p.name for p in out_path.parent.iterdir()] == ["model.pkl"]  # no temp left
    shutil.rmtree(run_dir)  # the pickle must carry the model, not point at its files

    frame = live_frame(live)
    work = tmp_path / "numerai"
    work.mkdir()
    out = run_like_numerai(out_path, frame, BLOCKED_FOR[name], work)

    assert list(out.columns) == ["prediction"]
    assert out.index.equals(frame.index) and out.index.name == "id"
    values = out["prediction"].to_numpy()
    assert values.shape == (LIVE_ROWS,) and np.isfinite(values).all()
    assert values.min() > 0 and values.max() < 1
    np.testing.assert_allclose(values, expected.loc[out.index].to_numpy(), rtol=0, atol=1e-6)


def test_neutralization_changes_the_exported_predictions(models, live, tmp_path):
    # guards the test above: with a neutralizing config, the match is not the plain ranks'
    frame = live_frame(live)
    plain = export.build_predict(make_run(tmp_path / "a", models["lgbm"], NONE))(frame, None)
    neutral = export.build_predict(make_run(tmp_path / "b", models["lgbm"], NEUTRALIZE_ALL))(
        frame, None)
    assert np.abs(plain["prediction"] - neutral["prediction"]).max() > 0.05


def test_run_cfg_argument_overrides_the_run_config(models, live, tmp_path):
    frame = live_frame(live)
    run_dir = make_run(tmp_path / "run", models["lgbm"], NONE)
    run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    run_cfg.postprocess = NEUTRALIZE_SOME
    given = export.build_predict(run_dir, run_cfg)(frame, None)
    saved = make_run(tmp_path / "run2", models["lgbm"], NEUTRALIZE_SOME)
    pd.testing.assert_frame_equal(given, export.build_predict(saved)(frame, None))


# -- live features the model cannot use -------------------------------------------------------


def test_missing_feature_column_is_named(models, live, tmp_path):
    predict = export.build_predict(make_run(tmp_path / "run", models["lgbm"], NONE))
    dropped = live.feature_names[3]
    with pytest.raises(NumerlabError) as err:
        predict(live_frame(live).drop(columns=[dropped]), None)
    message = str(err.value)
    assert f"lacks 1 of the model's {N_FEATURES} feature columns, e.g. {dropped!r}" in message
    assert "\n" not in message


def test_float_feature_columns_are_converted_and_checked(models, live, tmp_path):
    predict = export.build_predict(make_run(tmp_path / "run", models["mlp"], NONE))
    frame = live_frame(live)
    as_float = frame.astype({name: np.float64 for name in live.feature_names})
    pd.testing.assert_frame_equal(predict(as_float, None), predict(frame, None))
    name = live.feature_names[2]
    as_float.loc[as_float.index[5], name] = 2.5
    with pytest.raises(NumerlabError, match=rf"column '{name}' holds 2.5 at row 5"):
        predict(as_float, None)
    as_float.loc[as_float.index[5], name] = np.nan
    with pytest.raises(NumerlabError, match=rf"column '{name}' holds nan at row 5"):
        predict(as_float, None)


# -- bad run dirs and configs: one line each, no file written --------------------------------


def test_run_dir_without_model_is_one_line_and_writes_nothing(tmp_path):
    out_path = tmp_path / "model.pkl"
    out_path.write_bytes(b"previous upload")
    (tmp_path / "run").mkdir()
    with pytest.raises(NumerlabError) as err:
        export.export_model(tmp_path / "run", out_path)
    assert str(err.value) == f"{tmp_path / 'run'}: no model/ directory (not a trained numerlab run)"
    assert out_path.read_bytes() == b"previous upload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pkl", "run"]


def test_bad_postprocess_configs_are_named(models, tmp_path):
    cases = [
        ({"_target_": "numerlab.postprocess.Winsorize"},
         "postprocess._target_=numerlab.postprocess.Winsorize cannot be imported"),
        ({**NEUTRALIZE_ALL, "proportion": 1.5},
         "postprocess.proportion=1.5 must be a number within [0, 1]"),
        ({**NEUTRALIZE_ALL, "columns": ["feature_nope"]},
         "postprocess.columns: features.json has no feature 'feature_nope'"),
        ({**NEUTRALIZE_ALL, "features": "nope"},
         ("postprocess.features: features.json has no feature set 'nope' (available: "
          "model, other, all)")),
    ]
    for i, (pp_cfg, message) in enumerate(cases):
        run_dir = make_run(tmp_path / f"run{i}", models["lgbm"], pp_cfg)
        with pytest.raises(NumerlabError) as err:
            export.export_model(run_dir, tmp_path / "model.pkl")
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    run_dir = tmp_path / "run0"
    (run_dir / ".hydra" / "config.yaml").unlink()
    with pytest.raises(NumerlabError, match=r"config.yaml: missing"):
        export.build_predict(run_dir)
    assert not (tmp_path / "model.pkl").exists()


# -- the numpy pieces against their references --------------------------------------------------


def test_rank_unit_is_scipys_average_rank():
    rng = np.random.default_rng(3)
    for values in (rng.integers(0, 6, 300).astype(float), rng.standard_normal(257),
                   np.array([0.3]), np.array([1.0, 1.0, 1.0])):
        expected = (rankdata(values, method="average") - 0.5) / len(values)
        np.testing.assert_allclose(export.rank_unit(values), expected, rtol=0, atol=1e-12)
    assert export.rank_unit is scoring.rank_unit  # the pickle ranks with the one rank


def test_neutralization_matches_postprocess_on_one_era():
    rng = np.random.default_rng(4)
    features = rng.integers(0, 5, size=(200, 6), dtype=np.int8)
    features[:, 5] = features[:, 0]  # a collinear column: the rcond cut-off matters
    values = features[:, :3].sum(axis=1) + rng.standard_normal(200)
    columns = [5, 0, 2, 4]
    expected = postprocess.neutralize_per_era(values, features[:, columns],
                                              np.array(["X"] * 200), proportion=0.7)
    names = [f"f{j}" for j in columns]
    neutral = postprocess.Neutralization(0.7, names, rcond=1e-6)(values, features[:, columns])
    np.testing.assert_allclose(neutral, expected, rtol=0, atol=1e-9)


def test_export_refuses_a_scorer_that_predicts_differently(models, tmp_path, monkeypatch):
    # a rebuilt model that drifted from the saved one must never reach the upload
    drifted = {LGBMModel: lambda model: lambda x: np.zeros(len(x))}
    monkeypatch.setattr(export, "scorer_builders", lambda: drifted)
    run_dir = make_run(tmp_path / "run", models["lgbm"], NONE)
    with pytest.raises(NumerlabError, match=r"model: the exported model predicts differently"):
        export.export_model(run_dir, tmp_path / "model.pkl")
    assert not (tmp_path / "model.pkl").exists()


@pytest.mark.parametrize("library", ["lgbm", "xgboost"])
def test_an_early_stopped_gbdt_exports_the_trees_it_predicts_with(library, tmp_path, live):
    """After early stopping on a holdout the model predicts with the best round's trees;
    the pickle must too (the export's own check refuses a scorer that differs)."""
    train, holdout = make_dataset(20, 100, seed=0), make_dataset(6, 100, seed=3)
    cls = LGBMModel if library == "lgbm" else XGBModel
    params = ({"objective": "regression", "learning_rate": 0.3, "num_leaves": 15,
               "max_bin": 5, "num_threads": 1} if library == "lgbm"
              else {"eta": 0.3, "max_depth": 4, "max_bin": 5, "nthread": 1})
    model = cls(params, num_boost_round=200, early_stopping_rounds=3)
    model.fit(train, holdout, FitContext(seed=0, run_dir=tmp_path, holdout=True))
    assert model.best_iteration is not None and model.best_iteration < 199
    run_dir = make_run(tmp_path / "run", model, NONE)
    predict = export.build_predict(run_dir)
    got = predict(live_frame(live), None)["prediction"].to_numpy()
    loaded, _ = load_model(run_dir / "model")
    expected = scoring.rank_unit(loaded.predict(live.features))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_normal_quantile_without_scipy_is_ndtri():
    p = export.rank_unit(np.random.default_rng(5).standard_normal(1001))
    p = np.concatenate([p, [1e-9, 0.5, 1 - 1e-9]])
    np.testing.assert_allclose(export.normal_quantile_stdlib(p), ndtri(p), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_array_equal(export.normal_quantile(p), ndtri(p))


# -- ensembles --------------------------------------------------------------------------------

NN_MEMBER = {"lr": 3e-3, "batch_size": 128, "eval_batch_size": 256, "patience": None}
MEMBER_OVERRIDES = {
    "lgbm": {"num_boost_round": 30, "params": {"num_threads": 1, "num_leaves": 15}},
    "xgboost": {"num_boost_round": 20, "params": {"nthread": 1, "learning_rate": 0.1}},
    "mlp": {"d_hidden": 16, **NN_MEMBER},
    "resnet": {"n_blocks": 1, "d_main": 16, **NN_MEMBER},
    "tabnet": {"n_steps": 2, "virtual_batch_size": 64, "mask_type": "entmax", **NN_MEMBER},
}
TRAINER = {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "logger": False,
           "enable_progress_bar": False, "enable_model_summary": False,
           "enable_checkpointing": False, "num_sanity_val_steps": 0}


def fit_ensemble(members: list[str], weights: list[float], combine: str,
                 work: Path) -> EnsembleModel:
    model = EnsembleModel(members, weights=weights, targets=None, combine=combine,
                          overrides=MEMBER_OVERRIDES, n_jobs=1)
    model.fit(make_dataset(20, 100, seed=0), None,
              FitContext(seed=0, run_dir=work, trainer=TRAINER))
    return model


def with_combine(model: EnsembleModel, combine: str) -> EnsembleModel:
    """The same fitted members, combined another way."""
    other = copy.copy(model)
    other.combine, other._predicted = combine, []
    return other


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("ensembles")
    lgbm_mlp = fit_ensemble(["lgbm", "mlp"], [2, 1], "rank", work / "lgbm_mlp")
    torch_only = fit_ensemble(["mlp", "mlp"], [1, 3], "gaussian", work / "torch_only")
    # every neural family beside a GBDT: TabNet's autograd Functions and batch norms,
    # ResNet's blocks, all pickled by value
    mixed = fit_ensemble(["xgboost", "resnet", "tabnet"], [1, 1, 2], "rank", work / "mixed")
    return {"lgbm+mlp rank": lgbm_mlp, "lgbm+mlp gaussian": with_combine(lgbm_mlp, "gaussian"),
            "mlp+mlp gaussian": torch_only, "xgboost+resnet+tabnet rank": mixed,
            "xgboost+resnet+tabnet gaussian": with_combine(mixed, "gaussian")}


@pytest.mark.slow  # the pickle in a fresh process
@pytest.mark.parametrize(("name", "pp_cfg", "blocked"), [
    ("lgbm+mlp rank", NONE, BLOCKED), ("lgbm+mlp gaussian", NONE, BLOCKED),
    ("mlp+mlp gaussian", NONE, [*BLOCKED, "scipy"]),  # normal quantiles without scipy
    ("xgboost+resnet+tabnet rank", NEUTRALIZE_SOME, BLOCKED),
    ("xgboost+resnet+tabnet gaussian", NEUTRALIZE_OTHER_SET, BLOCKED),
])
def test_an_exported_ensemble_runs_without_numerlab_and_matches_numerlab(
        name, pp_cfg, blocked, ensembles, live, tmp_path):
    run_dir = make_run(tmp_path / "run", ensembles[name], pp_cfg)
    columns = OTHER_SET if pp_cfg is NEUTRALIZE_OTHER_SET else None
    expected = numerlab_live_predictions(run_dir, live, postprocess_columns=columns)
    assert expected.nunique() > LIVE_ROWS // 2
    out_path = export.export_model(run_dir, tmp_path / "model.pkl")
    shutil.rmtree(run_dir)

    frame = live_frame(live)
    work = tmp_path / "numerai"
    work.mkdir()
    out = run_like_numerai(out_path, frame, blocked, work)
    assert out.index.equals(frame.index)
    np.testing.assert_allclose(out["prediction"].to_numpy(),
                               expected.loc[out.index].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "libraries"), [
    ("lgbm+mlp rank", ["lightgbm", "torch"]), ("mlp+mlp gaussian", ["torch"]),
    ("xgboost+resnet+tabnet rank", ["xgboost", "torch"]),
])
def test_an_exported_ensemble_names_the_libraries_of_its_members(name, libraries, ensembles,
                                                                  tmp_path):
    # what export.json records and the image must hold (its pins are compared for these)
    exported = export.export_pickle(make_run(tmp_path / "run", ensembles[name], NONE),
                                    tmp_path / "model.pkl")
    assert exported.libraries == libraries
    assert [type(s).__name__ for s in exported.predictor.scorer.scorers] == [
        "LightGBMScorer" if m == "lgbm" else "XGBoostScorer" if m == "xgboost"
        else "TorchScorer" for m in ensembles[name].members]


def test_an_ensembles_combine_method_reaches_the_export(ensembles, live, tmp_path):
    # guards the test above: rank and gaussian combining really differ on these members
    frame = live_frame(live)
    rank, gaussian = (export.build_predict(make_run(tmp_path / name, ensembles[name], NONE))(
        frame, None)["prediction"] for name in ("lgbm+mlp rank", "lgbm+mlp gaussian"))
    assert np.abs(rank - gaussian).max() > 1e-3


def test_an_ensemble_member_that_cannot_be_exported_is_named(ensembles, tmp_path):
    model = copy.copy(ensembles["lgbm+mlp rank"])
    model.models = [model.models[0], object()]
    with pytest.raises(NumerlabError, match=r"^ensemble member 1-mlp: model class "
                                            r"builtins.object cannot be exported"):
        export.scorer_for(model)


# -- post-processing on a feature set the model does not use ----------------------------------


@pytest.mark.slow  # the pickle in a fresh process
def test_neutralizing_on_another_feature_set_exports_and_matches_numerlab(models, live,
                                                                         tmp_path):
    run_dir = make_run(tmp_path / "run", models["lgbm"], NEUTRALIZE_OTHER_SET)
    expected = numerlab_live_predictions(run_dir, live, postprocess_columns=OTHER_SET)
    plain = numerlab_live_predictions(make_run(tmp_path / "plain", models["lgbm"], NONE), live)
    assert np.abs(expected - plain.loc[expected.index]).max() > 0.05  # the set matters
    out_path = export.export_model(run_dir, tmp_path / "model.pkl")
    shutil.rmtree(run_dir)
    shutil.rmtree(tmp_path / "run-data")  # the set's columns travel in the pickle

    frame = live_frame(live)
    work = tmp_path / "numerai"
    work.mkdir()
    out = run_like_numerai(out_path, frame, BLOCKED, work)
    np.testing.assert_allclose(out["prediction"].to_numpy(),
                               expected.loc[out.index].to_numpy(), rtol=0, atol=1e-6)


def test_a_live_frame_missing_a_postprocess_column_is_one_line(models, live, tmp_path):
    predict = export.build_predict(make_run(tmp_path / "run", models["lgbm"],
                                            NEUTRALIZE_OTHER_SET))
    with pytest.raises(NumerlabError) as err:
        predict(live_frame(live).drop(columns=[EXTRA_FEATURES[1]]), None)
    assert str(err.value) == (f"live_features lacks 1 of the post-processing's "
                              f"{len(OTHER_SET)} feature columns, e.g. {EXTRA_FEATURES[1]!r}")


def test_a_feature_set_without_the_runs_data_dir_is_one_line(models, tmp_path):
    run_dir = make_run(tmp_path / "run", models["lgbm"], NEUTRALIZE_OTHER_SET)
    run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    del run_cfg["data"]
    with pytest.raises(NumerlabError, match=r"has no data.dir, so the feature columns "
                                            r"postprocess names cannot be read"):
        export.build_predict(run_dir, run_cfg)
    run_cfg.data = {"dir": str(tmp_path / "nowhere")}
    with pytest.raises(NumerlabError, match=r"^missing data file .*nowhere/features.json$"):
        export.build_predict(run_dir, run_cfg)
