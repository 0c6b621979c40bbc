"""Red-team inputs of the tasks that start from a finished run (issue #18): a damaged model
file is one `error:` line naming it (never LightGBM's C++ abort, a segfault or a traceback),
and a run dir without metrics.json (what a kill -9 during the final moves leaves) is refused
by live, stake, backtest and export as compare refuses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FAST_GBDT, SMALL_DATA, error_line, run_in_process

pytestmark = pytest.mark.slow  # fits three models (one neural) in this process

MODELS = {
    "lgbm": ["model=lgbm", *FAST_GBDT],
    "xgboost": ["model=xgboost", *FAST_GBDT],
    "mlp": ["model=mlp", "trainer.max_epochs=1", "trainer=cpu"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One small train run per model family, in this process: name -> run dir."""
    root = tmp_path_factory.mktemp("redteam-runs")
    data_dir = root / "data"
    runs = {}
    for name, overrides in MODELS.items():
        run_dir = root / name
        proc = run_in_process([*SMALL_DATA, *overrides, f"data.dir={data_dir}", "logger=none",
                               f"hydra.run.dir={run_dir}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = run_dir
    return runs


def copied(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def garble(path: Path) -> None:
    """A few bytes in the middle changed, the length kept."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = b".5x\n"
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": truncate, "garbled": garble}
MODEL_FILES = [("lgbm", "lgbm.txt"), ("lgbm", "params.json"), ("xgboost", "xgboost.json"),
               ("mlp", "state_dict.pt"), ("mlp", "network.json"), ("lgbm", "numerlab_model.json")]


def run_task(task: str, run_dir: Path, tmp_path: Path, *extra: str):
    return run_in_process([f"task={task}", f"run_dir={run_dir}", *SMALL_DATA,
                           f"data.dir={run_dir.parent / 'data'}", "logger=none",
                           f"hydra.run.dir={tmp_path / 'job'}", *extra])


@pytest.mark.parametrize("task", ["live", "export"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize(("model", "file"), MODEL_FILES)
def test_a_damaged_model_file_is_one_line_naming_it(trained, tmp_path, task, damage, model,
                                                    file):
    run_dir = copied(trained[model], tmp_path)
    path = run_dir / "model" / file
    assert path.is_file(), sorted(p.name for p in path.parent.iterdir())
    DAMAGES[damage](path)
    line = error_line(run_task(task, run_dir, tmp_path))
    assert str(path) in line, line
    assert not (tmp_path / "job" / "submission.csv").exists()
    assert not (tmp_path / "job" / "model.pkl").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_lightgbm_text_saved_without_checksums_is_refused_before_lightgbm(
        trained, tmp_path, damage):
    """A run saved before numerlab recorded its files' checksums: the LightGBM text itself
    is checked (LightGBM's loader would abort the process or read past its buffer)."""
    run_dir = copied(trained["lgbm"], tmp_path)
    manifest = run_dir / "model" / "numerlab_model.json"
    meta = json.loads(manifest.read_text())
    del meta["files"]
    manifest.write_text(json.dumps(meta))
    path = run_dir / "model" / "lgbm.txt"
    DAMAGES[damage](path)
    line = error_line(run_task("live", run_dir, tmp_path))
    assert f"{path}: not a readable LightGBM model" in line


def test_lightgbm_texts_cut_anywhere_are_refused_by_the_check(trained):
    """Every cut of a real model text (each a crash or hang of LightGBM's own loader when
    tree_sizes promises more) fails the check; the whole text passes it."""
    from numerlab.models.lightgbm_text import ModelTextError, check_model_text

    text = (trained["lgbm"] / "model" / "lgbm.txt").read_text()
    check_model_text(text)
    for cut in range(0, len(text) - 1, max(1, len(text) // 200)):
        with pytest.raises(ModelTextError):
            check_model_text(text[:cut])
    with pytest.raises(ModelTextError, match="not a number"):
        check_model_text(text.replace("leaf_value=", "leaf_value=.5", 1))
    with pytest.raises(ModelTextError, match="objective"):
        check_model_text(text.replace("objective=regression", "objective=regr1ssion", 1))


def test_an_unchanged_model_still_loads_and_its_checksums_are_recorded(trained):
    from numerlab.artifacts import sha256
    from numerlab.models.base import load_model

    for run_dir in trained.values():
        model_dir = run_dir / "model"
        files = json.loads((model_dir / "numerlab_model.json").read_text())["files"]
        assert files and all(sha256(model_dir / name) == digest
                             for name, digest in files.items())
        load_model(model_dir)


@pytest.mark.parametrize(("task", "extra"), [
    ("live", []), ("export", []), ("backtest", []),
    ("stake", ["tournament.model_name=my_model"]),
])
def test_a_run_dir_without_metrics_json_is_refused(trained, tmp_path, task, extra):
    run_dir = copied(trained["lgbm"], tmp_path)
    (run_dir / "metrics.json").unlink()
    line = error_line(run_task(task, run_dir, tmp_path, *extra))
    assert f"run_dir={run_dir} has no metrics.json: the run did not finish" in line
