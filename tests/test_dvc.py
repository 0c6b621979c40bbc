"""The DVC door, with the real `dvc` in a temporary git repo made from the project's files:
repro, caching, recovery, `exp run -S`, `exp show`, plots, the queue, bad input, and the
equivalence `dvc exp run -S model=xgboost` == `python run.py model=xgboost`."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import FAST_GBDT, ROOT, SMALL_DATA, compose

from numerlab import stages

VENV_BIN = Path(sys.executable).parent
DVC = VENV_BIN / "dvc"
SMALL = [*SMALL_DATA, *FAST_GBDT]  # the repo's params.yaml and the GBDT experiments use these
PROJECT_FILES = ["conf", "run.py", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore",
                 ".dvc/config", ".dvc/.gitignore", "src/numerlab"]
STAGES = ["data", "features", "train", "predict", "evaluate"]


def env() -> dict[str, str]:
    return {
        **os.environ,
        # the venv's python runs the stage commands; `src` (relative: also inside the
        # temporary copies of `dvc queue`) makes them import the repo's own code
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": "src",
        "DVC_NO_ANALYTICS": "1",
        "WANDB_SILENT": "true",
        "HYDRA_FULL_ERROR": "0",
        "COLUMNS": "250",
    }


def sh(repo: Path, *args: str, check: bool = True, timeout: int = 300
       ) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), check=False, cwd=repo, capture_output=True, text=True,
                          env=env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dvc(repo: Path, *args: str, check: bool = True, timeout: int = 300
        ) -> subprocess.CompletedProcess:
    return sh(repo, str(DVC), *args, check=check, timeout=timeout)


def ran(proc: subprocess.CompletedProcess) -> list[str]:
    """Stages whose command ran, in order."""
    out = proc.stdout + proc.stderr
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float) or isinstance(b[key], float):
            assert math.isclose(value, b[key], rel_tol=0, abs_tol=1e-12), key
        else:
            assert value == b[key], key


def copy_project(dest: Path) -> Path:
    for rel in PROJECT_FILES:
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    return dest


def git_init(repo: Path) -> None:
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "numerlab tests")
    sh(repo, "git", "config", "user.email", "tests@numerlab.invalid")
    sh(repo, "git", "config", "commit.gpgsign", "false")
    commit(repo, "project")


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project in a fresh git repo whose committed params.yaml uses the small data."""
    root = copy_project(tmp_path_factory.mktemp("dvc") / "project")
    sh(root, sys.executable, "-m", "numerlab.stages", "params", *SMALL)
    git_init(root)
    return root


@pytest.fixture(scope="module")
def reproduced(repo: Path) -> subprocess.CompletedProcess:
    proc = dvc(repo, "repro")
    commit(repo, "dvc repro")  # dvc.lock and metrics.json go to git
    return proc


# --- config -------------------------------------------------------------------------------

def test_params_yaml_is_dvcs_composition_of_conf(tmp_path):
    """The committed params.yaml is byte for byte what `dvc exp run` composes from conf/, so a
    plain `dvc repro` and `python run.py` start from the same values."""
    from dvc.utils.hydra import compose_and_dump

    fresh = tmp_path / "params.yaml"
    compose_and_dump(fresh, str(ROOT / "conf"), None, "config", str(ROOT), [])
    committed = (ROOT / "params.yaml").read_text()
    assert committed == fresh.read_text(), (
        "params.yaml is stale: regenerate it with `python -m numerlab.stages params`")
    assert "${" not in committed  # nothing left for DVC's composition to resolve


def test_dvc_config_enables_hydra_on_conf():
    from configobj import ConfigObj

    hydra = ConfigObj(str(ROOT / ".dvc/config"))["hydra"]
    assert hydra["enabled"] == "true"
    assert hydra["config_dir"] == stages.CONFIG_DIR
    assert hydra["config_name"] == stages.CONFIG_NAME


@pytest.mark.slow
def test_gitignore_keeps_metrics_json_in_git(tmp_path):
    """metrics.json is `cache: false`: DVC commits it with each experiment, which `dvc exp
    show` reads; a git-ignored metrics.json shows as '!' for every experiment."""
    shutil.copy2(ROOT / ".gitignore", tmp_path / ".gitignore")
    sh(tmp_path, "git", "init", "-q")
    ignored = sh(tmp_path, "git", "check-ignore", "-q", "artifacts/metrics.json", check=False)
    assert ignored.returncode == 1, (
        ".gitignore ignores artifacts/metrics.json: use '/artifacts/*' and "
        "'!/artifacts/metrics.json' instead of '/artifacts/'")
    assert sh(tmp_path, "git", "check-ignore", "-q", "artifacts/model/x").returncode == 0


def test_stage_params_exist_in_every_model_composition():
    """DVC refuses a stage whose params key is absent: every listed key must be composed."""
    from omegaconf import OmegaConf


    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    keys = {k for stage in spec["stages"].values() for k in stage.get("params", [])}
    for model in sorted(p.stem for p in (ROOT / "conf/model").glob("*.yaml")):
        for data in ("synthetic", "v5"):
            cfg = compose([f"model={model}", f"data={data}"])
            for key in keys:
                assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>", (
                    model, data, key)


@pytest.mark.parametrize("overrides", [
    [], ["model=xgboost", "features=medium", "seed=0"], ["model=tabnet", "model.n_d=16"],
    ["model=mlp", "postprocess=neutralize", "target=cyrusd_20", "data=v5"],
])
def test_dvc_and_hydra_compose_the_same_config(tmp_path, overrides):
    """What `dvc exp run -S o` writes to params.yaml is what `python run.py o` runs with."""
    from dvc.utils.hydra import compose_and_dump
    from omegaconf import OmegaConf


    compose_and_dump(tmp_path / "params.yaml", str(ROOT / "conf"), None, "config", str(ROOT),
                     overrides)
    via_dvc = OmegaConf.to_container(OmegaConf.load(tmp_path / "params.yaml"))
    via_hydra = OmegaConf.to_container(compose(overrides), resolve=True)
    assert via_dvc == via_hydra


# --- dvc repro ----------------------------------------------------------------------------

@pytest.mark.slow
def test_repro_runs_every_stage_and_writes_the_outs(repo, reproduced):
    assert ran(reproduced) == STAGES
    art = repo / "artifacts"
    for rel in ("features/train.parquet", "features/validation.parquet",
                "features/live.parquet", "features/manifest.json", "model/numerlab_model.json",
                "predictions/validation.parquet", "predictions/live.parquet",
                "submission.csv", "metrics.json", "per_era.parquet", "per_era.csv",
                "plots/cumulative_scores.png"):
        assert (art / rel).is_file(), rel
    assert not list(art.glob(".staging-*")) and not list(art.glob(".train-*"))
    m = metrics(art / "metrics.json")
    assert m["model"] == "lgbm" and m["n_eras"] > 0 and m["corr_mean"] is not None
    assert (art / "submission.csv").read_text().splitlines()[0] == "id,prediction"
    # what DVC caches is git-ignored; metrics.json and the plot data are committed
    tracked = sh(repo, "git", "ls-files", "artifacts").stdout.split()
    assert tracked == ["artifacts/metrics.json"], (
        "git must track artifacts/metrics.json (cache: false in dvc.yaml) for `dvc exp show`"
        " to show experiments' metrics; see .gitignore")


@pytest.mark.slow
def test_second_repro_does_nothing(repo, reproduced):
    # the data stage always looks (a moment: stat the files, rewrite the same manifest);
    # everything that reads the data is up to date
    proc = dvc(repo, "repro")
    assert ran(proc) == ["data"]
    for stage in STAGES[1:]:
        assert f"Stage '{stage}' didn't change" in proc.stdout
    status = dvc(repo, "status").stdout
    assert "always changed" in status and "modified" not in status


@pytest.mark.slow
def test_model_param_change_reruns_only_train_predict_evaluate(repo, reproduced):
    params = repo / "params.yaml"
    original = params.read_text()
    cfg = yaml.safe_load(original)
    cfg["model"]["params"]["learning_rate"] = 0.05
    params.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        proc = dvc(repo, "repro")
        assert ran(proc) == ["data", "train", "predict", "evaluate"]
        assert "Stage 'features' didn't change" in proc.stdout
    finally:
        params.write_text(original)
    # back to the committed params: every out comes from the run cache, nothing is rerun
    proc = dvc(repo, "repro")
    assert ran(proc) == ["data"]
    assert "is cached - skipping run" in proc.stdout
    assert sh(repo, "git", "status", "--porcelain").stdout == ""


@pytest.mark.slow
def test_deleted_outs_are_restored_from_the_cache(repo, reproduced):
    model_file = repo / "artifacts/model/numerlab_model.json"
    before = model_file.read_bytes()
    shutil.rmtree(repo / "artifacts/model")
    status = dvc(repo, "status").stdout
    assert "deleted:            artifacts/model" in status
    dvc(repo, "checkout")
    assert model_file.read_bytes() == before

    submission = repo / "artifacts/submission.csv"
    before = submission.read_bytes()
    submission.unlink()
    proc = dvc(repo, "repro")
    assert ran(proc) == ["data"]
    assert submission.read_bytes() == before


@pytest.mark.slow
def test_interrupted_stage_leaves_no_out(repo, reproduced, tmp_path, monkeypatch):
    """A stage that dies part way leaves neither its outs nor a staging dir behind."""
    import numerlab.report

    shutil.copytree(repo / "data", tmp_path / "data")
    shutil.copy2(repo / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "artifacts").mkdir()
    shutil.copy2(repo / "artifacts" / "data.json", tmp_path / "artifacts" / "data.json")
    monkeypatch.chdir(tmp_path)
    art = tmp_path / "artifacts"
    real_write_split, written = stages.write_split, []

    def dies_after_one_split(dataset, path):
        if written:
            raise KeyboardInterrupt  # as if Ctrl-C or a kill arrived mid-stage
        written.append(path)
        real_write_split(dataset, path)

    monkeypatch.setattr(stages, "write_split", dies_after_one_split)
    with pytest.raises(KeyboardInterrupt):
        stages.main(["features"])
    assert written and not (art / "features").exists()
    assert not list(art.glob(".*"))

    for out in ("features", "model", "predictions"):
        shutil.copytree(repo / "artifacts" / out, art / out)

    def plotting_dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(numerlab.report, "plot_scores", plotting_dies)
    with pytest.raises(KeyboardInterrupt):
        stages.main(["evaluate"])
    assert sorted(p.name for p in art.iterdir()) == ["data.json", "features", "model",
                                                     "predictions"]


# --- experiments --------------------------------------------------------------------------

def exp_run(repo: Path, name: str, overrides: list[str]
            ) -> tuple[subprocess.CompletedProcess, dict]:
    sets = [arg for o in overrides for arg in ("-S", o)]
    proc = dvc(repo, "exp", "run", "-n", name, *sets)
    return proc, metrics(repo / "artifacts/metrics.json")


@pytest.fixture(scope="module")
def xgboost_exp(repo, reproduced) -> tuple[subprocess.CompletedProcess, dict]:
    return exp_run(repo, "xgb", ["model=xgboost", *SMALL])


@pytest.mark.slow
def test_exp_run_with_another_model_reuses_data_and_features(xgboost_exp):
    proc, m = xgboost_exp
    assert ran(proc) == ["data", "train", "predict", "evaluate"]
    assert m["model"] == "xgboost"


def assert_same_run(repo: Path, via_dvc: dict, run_dir: Path) -> None:
    import polars as pl
    from polars.testing import assert_frame_equal

    assert_same_metrics(via_dvc, metrics(run_dir / "metrics.json"))
    for rel in ("predictions/validation.parquet", "predictions/live.parquet",
                "per_era.parquet"):
        assert_frame_equal(pl.read_parquet(repo / "artifacts" / rel),
                           pl.read_parquet(run_dir / rel))
    assert (repo / "artifacts/submission.csv").read_text() == (
        run_dir / "submission.csv").read_text()


@pytest.mark.slow
def test_exp_run_equals_run_py_for_the_same_overrides(repo, xgboost_exp, tmp_path):
    """The two doors give the same metrics.json (and artifacts) for the same overrides."""
    sh(repo, sys.executable, "run.py", "model=xgboost", *SMALL, f"hydra.run.dir={tmp_path}")
    assert_same_run(repo, xgboost_exp[1], tmp_path)


@pytest.mark.slow
def test_exp_run_equals_run_py_for_a_neural_model(repo, xgboost_exp, tmp_path):
    overrides = ["model=tabnet", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                 *SMALL_DATA]
    _, via_dvc = exp_run(repo, "tabnet", overrides)
    assert via_dvc["model"] == "tabnet"
    sh(repo, sys.executable, "run.py", *overrides, f"hydra.run.dir={tmp_path}")
    assert_same_run(repo, via_dvc, tmp_path)


# an ensemble of two families on two targets, neutralized against a feature set the model
# does not train on: the features stage stores the member's target and the medium columns
ENSEMBLE = ["model=ensemble", "model.members=[lgbm,mlp]",
            "model.targets=[target,target_victor_20]", "model.weights=[2,1]",
            "model.overrides.lgbm={num_boost_round:40}", "model.overrides.mlp={d_hidden:16}",
            "trainer.max_epochs=1", "trainer.accelerator=cpu", "postprocess=neutralize",
            "postprocess.proportion=0.5", "postprocess.features=medium", *SMALL_DATA]


@pytest.mark.slow
def test_exp_run_of_a_multi_target_neutralized_ensemble_equals_run_py(repo, xgboost_exp,
                                                                       tmp_path):
    import polars as pl
    from polars.testing import assert_frame_equal

    proc, via_dvc = exp_run(repo, "ensemble", ENSEMBLE)
    assert "features" in ran(proc)  # load.targets and load.postprocess_features changed
    manifest = json.loads((repo / "artifacts/features/manifest.json").read_text())
    assert manifest["aux_names"] == ["target_victor_20"]
    medium = json.loads((repo / "data/synthetic/features.json").read_text())[
        "feature_sets"]["medium"]
    assert manifest["postprocess_columns"] == medium
    assert manifest["extra_names"] == [c for c in medium if c not in manifest["feature_names"]]
    assert manifest["extra_names"]  # columns the model does not train on

    sh(repo, sys.executable, "run.py", *ENSEMBLE, f"hydra.run.dir={tmp_path}")
    assert_same_run(repo, via_dvc, tmp_path)
    for name in ("features.parquet", "members.parquet"):
        assert_frame_equal(pl.read_parquet(repo / "artifacts/diagnostics" / name),
                           pl.read_parquet(tmp_path / name))
    members = pl.read_parquet(repo / "artifacts/diagnostics/members.parquet")
    assert members["member"].to_list() == ["0-lgbm", "1-mlp"]
    assert members["target"].to_list() == ["target", "target_victor_20"]


@pytest.mark.slow
def test_exp_show_json_has_params_and_metrics(repo, xgboost_exp):
    _, m = xgboost_exp
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    found = {}
    for commit_entry in shown:
        for exp in commit_entry.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev.get("data") or {}
                found[rev.get("name")] = data
    data = found["xgb"]
    shown_metrics = data["metrics"]["artifacts/metrics.json"]["data"]
    assert shown_metrics["corr_mean"] == m["corr_mean"]
    assert shown_metrics["model"] == "xgboost"
    assert data["params"]["params.yaml"]["data"]["model"]["_target_"].endswith("XGBModel")
    # the baseline commit shows its metrics too: metrics.json is committed to git
    (base,) = [c for c in shown if c["rev"] != "workspace"]
    assert base["data"]["metrics"]["artifacts/metrics.json"]["data"]["model"] == "lgbm"


@pytest.mark.slow
def test_plots_show_writes_per_era_and_cumulative_charts(repo, xgboost_exp):
    dvc(repo, "plots", "show", "-o", "dvc_plots")
    html = (repo / "dvc_plots/index.html").read_text()
    assert "Per-era validation CORR and MMC" in html
    assert "Cumulative validation CORR and MMC" in html
    assert "corr_cumulative" in html and "mmc_cumulative" in html
    assert "cumulative_scores.png" in html


@pytest.mark.slow
def test_queued_sweep_runs_with_two_workers(repo, xgboost_exp):
    overrides = [arg for o in ["model=lgbm,xgboost", *SMALL, "seed=7"] for arg in ("-S", o)]
    dvc(repo, "exp", "run", "--queue", *overrides)
    try:
        dvc(repo, "queue", "start", "-j", "2")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = dvc(repo, "queue", "status").stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
        assert status.count("Success") == 2, status
    finally:
        dvc(repo, "queue", "stop", "--kill", check=False)
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    models = sorted(
        rev["data"]["metrics"]["artifacts/metrics.json"]["data"]["model"]
        for c in shown for exp in c.get("experiments") or [] for rev in exp["revs"]
        if (rev.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data", {})
        .get("seed") == 7)
    assert models == ["lgbm", "xgboost"]


# --- bad input ----------------------------------------------------------------------------

def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith(("ERROR", "error:"))]


@pytest.mark.slow
@pytest.mark.parametrize("override, says", [
    ("model=nope", "Could not find 'model/nope'"),
    ("model.nonexistent_key=1", "Could not override 'model.nonexistent_key'"),
])
def test_bad_set_param_is_one_clear_line(repo, xgboost_exp, override, says):
    params_before = (repo / "params.yaml").read_text()
    proc = dvc(repo, "exp", "run", "-S", override, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert (repo / "params.yaml").read_text() == params_before


@pytest.mark.slow
def test_missing_params_key_is_one_clear_line(repo, reproduced, tmp_path):
    cfg = yaml.safe_load((repo / "params.yaml").read_text())
    del cfg["model"]["_target_"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    proc = sh(tmp_path, sys.executable, "-m", "numerlab.stages", "train", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        ("error: params.yaml: missing key 'model._target_' (run `dvc exp run` or regenerate "
        "params.yaml with `python -m numerlab.stages params`)")]

    # through dvc: DVC itself names the key before running the stage
    params = repo / "params.yaml"
    original = params.read_text()
    del cfg["model"]
    params.write_text(yaml.safe_dump(cfg))
    try:
        proc = dvc(repo, "repro", check=False)
    finally:
        params.write_text(original)
    assert proc.returncode != 0
    assert error_lines(proc) == [
        ("ERROR: failed to reproduce 'train': Parameters 'model' are missing from "
        "'params.yaml'.")]


@pytest.mark.slow
@pytest.mark.parametrize("stage, missing, maker", [
    ("features", "artifacts/data.json", "data"),
    ("train", "artifacts/features/manifest.json", "features"),
    ("predict", "artifacts/features/manifest.json", "features"),
    ("evaluate", "artifacts/features/manifest.json", "features"),
])
def test_stage_out_of_order_is_one_clear_line(repo, tmp_path, stage, missing, maker):
    shutil.copy2(repo / "params.yaml", tmp_path / "params.yaml")
    proc = sh(tmp_path, sys.executable, "-m", "numerlab.stages", stage, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {missing} is missing: run the '{maker}' stage first (`dvc repro {maker}`)"]


@pytest.mark.slow
def test_dvc_repro_of_a_single_stage_out_of_order_names_the_missing_input(tmp_path):
    fresh = copy_project(tmp_path / "fresh")
    git_init(fresh)
    proc = dvc(fresh, "repro", "--single-item", "train", check=False)
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert "'train'" in line and "artifacts/features" in line


@pytest.mark.slow
def test_later_stage_needs_the_model_of_the_train_stage(repo, reproduced, tmp_path):
    shutil.copy2(repo / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(repo / "artifacts/features", tmp_path / "artifacts/features")
    proc = sh(tmp_path, sys.executable, "-m", "numerlab.stages", "predict", check=False)
    assert proc.stderr.strip().splitlines() == [
        ("error: artifacts/model/numerlab_model.json is missing: run the 'train' stage first "
        "(`dvc repro train`)")]


@pytest.mark.slow
def test_stale_features_are_refused(repo, reproduced, tmp_path):
    """A stage run by hand after a params change does not use features made for other
    params."""
    cfg = yaml.safe_load((repo / "params.yaml").read_text())
    cfg["data"]["era_stride"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copytree(repo / "artifacts/features", tmp_path / "artifacts/features")
    proc = sh(tmp_path, sys.executable, "-m", "numerlab.stages", "train", check=False)
    assert proc.stderr.strip().splitlines() == [
        ("error: artifacts/features was made with another 'data.era_stride' than params.yaml: "
        "rerun the 'features' stage (`dvc repro features`)")]


@pytest.mark.slow
def test_features_made_with_a_setting_now_null_are_refused(repo, reproduced, tmp_path):
    """A key set to null is a value like any other: features kept for BMC's benchmark are
    stale once scoring.benchmark is null."""
    cfg = yaml.safe_load((repo / "params.yaml").read_text())
    assert cfg["scoring"]["benchmark"] is not None
    cfg["scoring"]["benchmark"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copytree(repo / "artifacts/features", tmp_path / "artifacts/features")
    proc = sh(tmp_path, sys.executable, "-m", "numerlab.stages", "train", check=False)
    assert proc.returncode == 2
    assert "was made with another 'scoring.benchmark' than params.yaml" in proc.stderr
