"""Every config value that can be checked without data is checked before data is loaded: one
line `error: ...` naming the key and what is allowed, exit status 2, nothing written but
Hydra's own `.hydra/`. run.py runs in this process (`run_in_process`); a case or two of each
kind of error also through a fresh `python run.py` (`run_cli`, slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose, error_line, run_cli, run_in_process

MISSING_DIR = "data.dir=/nonexistent/numerlab-never-created"


def assert_config_error(proc, run_dir: Path, *needles: str) -> None:
    line = error_line(proc)
    for needle in needles:
        assert needle in line, line
    written = sorted(p.relative_to(run_dir).parts[0] for p in run_dir.rglob("*") if p.is_file())
    assert set(written) <= {".hydra", "run.log"}, written  # Hydra's own config and job log


BAD_VALUES = [
    (["seed=abc"], ["seed='abc' must be an integer"]),
    (["data.era_stride=0"], ["data.era_stride=0 must be an integer >= 1"]),
    (["data.embargo_eras=-1"], ["data.embargo_eras=-1 must be an integer >= 0"]),
    (["data.synthetic.rows_per_era=3"], ["rows_per_era"]),
    (["postprocess=neutralize", "postprocess.proportion=-0.1"],
     ["postprocess.proportion=-0.1 must be a number within [0, 1]"]),
    (["postprocess=neutralize", "postprocess.proportion=abc"], ["postprocess.proportion='abc'"]),
    (["fit.holdout_eras=-2"], ["fit.holdout_eras=-2 must be null or an integer >= 0"]),
    (["model.early_stopping_rounds=20"], ["model.early_stopping_rounds=20 needs a holdout",
                                          "fit.holdout_eras"]),
    (["model.num_boost_round=0"], ["model.num_boost_round=0 must be an integer >= 1"]),
    (["ckpt_path=/tmp/x.ckpt"], ["ckpt_path=/tmp/x.ckpt", "cannot resume"]),
    (["model=mlp", "ckpt_path=/nonexistent/last.ckpt"], ["no such checkpoint file"]),
    (["trainer=cpu", "trainer.accelerator=tpu"], ["applies to neural models"]),
    (["+logger.kind=mlflow"], ["logger.kind is not a setting of numerlab.tracking.NoTracker"]),
    (["logger=wandb", "logger.mode=sometimes"], ["logger.mode='sometimes' is unknown",
                                                  "offline"]),
    (["logger._target_=numerlab.tracking.MLflowTracker"],
     ["logger._target_=numerlab.tracking.MLflowTracker cannot be imported",
      "csv, mlflow, none, tensorboard, wandb"]),
    (["task._target_=numerlab.tasks.nope.run"], ["task._target_=numerlab.tasks.nope.run",
                                                  "options: "]),
    (["staking=fixed", "staking.caps.max_change=-1"], ["staking.caps.max_change=-1"]),
    (["target=cyrusd_60", "data.embargo_eras=4"],
     ["data.embargo_eras=4 is too short for target_cyrusd_60", ">=12"]),
    (["model=ensemble", "model.members=[lgbm,lgbm]", "model.targets=[target,target_victor_60]"],
     ["too short for target_victor_60"]),
    (["optimized_metric=corr_nope"], ["optimized_metric=corr_nope is not a metrics.json key"]),
    (["data.embargo_eras=2"], ["data.embargo_eras=2 is too short for target", ">=4"]),
    (["task=cv", "cv.embargo_eras=2"], ["cv.embargo_eras=2 is too short for target", ">=4"]),
    # every group refuses keys it does not have, naming the close one
    (["+fit.holdout=8"], ["fit.holdout is not a setting of fit", "fit.holdout_eras"]),
    (["+cv.nsplits=3"], ["cv.nsplits is not a setting of cv", "cv.n_splits"]),
    (["+scoring.fcn=true"], ["scoring.fcn is not a setting of scoring", "scoring.fnc"]),
    (["+tournament.submitt=true"], ["tournament.submitt is not a setting", "tournament.submit"]),
    (["+task.wallet=3"], ["task.wallet is not a setting of task"]),
    (["task=backtest", "+task.walet=3"], ["task.walet is not a setting", "task.wallet"]),
    (["+payout.x=1"], ["payout.x", "corr_mult"]),
    (["+model.num_boost_rounds=5"], ["model.num_boost_rounds is not a setting",
                                     "model.num_boost_round"]),
    (["+model.params.num_leave=3"], ["model.params.num_leave is not a parameter of LightGBM",
                                     "num_leaves"]),
    (["model=xgboost", "+model.params.max_dept=3"], ["model.params.max_dept is not a "
                                                     "parameter of XGBoost"]),
    (["model.params.learning_rate=fast"], ["LightGBM rejected model.params",
                                           "learning_rate='fast'"]),
    # neural settings that need no data, before data
    (["model=mlp", "model.batch_size=0"], ["model.batch_size=0 must be an integer >= 1"]),
    (["model=mlp", "model.loss=huber"], ["model.loss='huber' is unknown", "mse, corr"]),
    (["model=mlp", "model.batching=x"], ["model.batching='x' is unknown", "rows, era"]),
    (["model=mlp", "model.dropout=2"], ["model.network", "dropout probability"]),
    (["model=mlp", "model.lr=fast"], ["model.lr='fast' must be a number"]),
    (["model=mlp", "trainer.precision=64x"], ["trainer config: Precision '64x' is invalid"]),
    (["model=mlp", "+trainer.max_epoch=3"], ["trainer.max_epoch is not a setting",
                                            "trainer.max_epochs"]),
    (["model=mlp", "seed=-1"], ["seed=-1 must be an integer within [0, 4294967295]"]),
]


def bad_value_args(tmp_path: Path, overrides: list[str]) -> list[str]:
    # data.dir points nowhere: any attempt to load data would fail with another message
    gbdt = [] if any(o.startswith("model=") for o in overrides) else FAST_GBDT
    return [*SMALL_DATA, *gbdt, MISSING_DIR, f"hydra.run.dir={tmp_path / 'run'}", *overrides]


def assert_bad_value(proc, tmp_path: Path, overrides: list[str], needles: list[str]) -> None:
    assert_config_error(proc, tmp_path / "run", *needles)


@pytest.mark.parametrize("overrides, needles", BAD_VALUES)
def test_bad_config_values_are_one_line_before_data(tmp_path, overrides, needles):
    proc = run_in_process(bad_value_args(tmp_path, overrides))
    assert_bad_value(proc, tmp_path, overrides, needles)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, needles", [BAD_VALUES[0], BAD_VALUES[4]])
def test_bad_config_values_are_one_line_from_a_fresh_process(tmp_path, overrides, needles):
    proc = run_cli(bad_value_args(tmp_path, overrides))
    assert_bad_value(proc, tmp_path, overrides, needles)


@pytest.mark.slow  # the environment of a fresh process: CUDA hidden before torch is imported
def test_gbdt_with_an_absent_device_fails_instead_of_training_on_cpu(tmp_path):
    # CUDA hidden, so the test means the same on a GPU machine
    run_dir = tmp_path / "run"
    proc = run_cli([*SMALL_DATA, MISSING_DIR, f"hydra.run.dir={run_dir}", "trainer=cuda"],
                   env={"CUDA_VISIBLE_DEVICES": ""})
    assert_config_error(proc, run_dir, "trainer.accelerator=cuda")


@pytest.mark.slow  # a fresh process: W&B's settings read from this HOME, not this process's
def test_wandb_online_without_a_key_fails_before_training(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*SMALL_DATA, MISSING_DIR, f"hydra.run.dir={run_dir}", "logger=wandb",
                    "logger.mode=online"],
                   env={"WANDB_API_KEY": "", "HOME": str(tmp_path),
                        "NETRC": str(tmp_path / "none")})
    assert_config_error(proc, run_dir, "logger.mode=online but no W&B API key",
                        "WANDB_API_KEY")


@pytest.mark.parametrize("search", ["lgbm_optuna", "mlp_optuna"])
def test_search_configs_keep_their_optimized_metric(search):
    cfg = compose([f"hparams_search={search}"])
    assert cfg.optimized_metric == "corr_sharpe"
    assert compose([]).optimized_metric == "corr_sharpe"
    assert compose([f"hparams_search={search}", "optimized_metric=mmc_mean"]
                   ).optimized_metric == "mmc_mean"


CANNOT_COMPOSE = [
    (["model=catboost"], ["Could not find 'model/catboost'", "lgbm, mlp, resnet, tabnet"]),
    (["model.no_such_key=1"], ["Could not override 'model.no_such_key'", "+model.no_such_key=1",
                               "not in struct"]),
    (["model.overrides.mlp=[d_hidden=256]"], ["override 'model.overrides.mlp=[d_hidden=256]'"]),
    (["hydra/launcher=nope"], ["hydra/launcher/nope", "joblib"]),
]


def assert_one_line_and_no_job(proc, run_dir: Path, needles: list[str]) -> None:
    """Hydra's own multi-line composition report becomes one line, exit status 2; nothing
    is written (no job started)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not run_dir.exists()


@pytest.mark.parametrize("overrides, needles", CANNOT_COMPOSE)
def test_configs_hydra_cannot_compose_are_one_line(tmp_path, overrides, needles):
    run_dir = tmp_path / "run"
    proc = run_in_process([*overrides, f"hydra.run.dir={run_dir}"])
    assert_one_line_and_no_job(proc, run_dir, needles)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, needles", [CANNOT_COMPOSE[0], CANNOT_COMPOSE[2]])
def test_configs_hydra_cannot_compose_are_one_line_from_a_fresh_process(tmp_path, overrides,
                                                                          needles):
    run_dir = tmp_path / "run"
    proc = run_cli([*overrides, f"hydra.run.dir={run_dir}"])
    assert_one_line_and_no_job(proc, run_dir, needles)


@pytest.mark.slow
def test_hydra_full_error_keeps_hydras_own_report(tmp_path):
    proc = run_cli(["model=catboost", f"hydra.run.dir={tmp_path / 'run'}"],
                   env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


@pytest.mark.parametrize("overrides, needles", [
    (["task=cv", "model=mlp"], ["cannot be used with task=cv", "its test eras"]),
    (["model=ensemble", "model.members=[mlp,mlp]"], ["cannot resume an ensemble"]),
])
def test_a_checkpoint_no_fit_may_start_from_is_one_line(tmp_path, overrides, needles):
    """A CV fold resumed from a checkpoint would start from a model that saw its test eras;
    an ensemble's members cannot share one checkpoint."""
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")
    run_dir = tmp_path / "run"
    proc = run_in_process([*overrides, MISSING_DIR, f"ckpt_path={checkpoint}",
                           f"hydra.run.dir={run_dir}"])
    assert_config_error(proc, run_dir, f"ckpt_path={checkpoint}", *needles)
