"""Row ids: a repeated id in any data file is one line naming the file and the id, before
any fit; a submission is never written with a repeated id or no rows; an empty live file
is said as such (task=train and task=live), not as "constant predictions"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_GBDT, error_line, run_in_process

from numerlab.errors import NumerlabError
from numerlab.submission import validate_submission, write_submission

V5 = ["data=v5", "data.era_stride=1", *FAST_GBDT]
FIT_LOG = "fitting "  # pipeline.fit_model's log line: a fit started


def repeat_an_id(path: Path) -> str:
    """The last scored row of the file (a known target, of data_type validation where the
    file has one) given the id of the scored row before it; that id."""
    frame = pd.read_parquet(path)
    scored = np.ones(len(frame), dtype=bool)
    if "target" in frame and frame["target"].notna().any():
        scored &= frame["target"].notna().to_numpy()
    if "data_type" in frame and (frame["data_type"] == "validation").any():
        scored &= (frame["data_type"] == "validation").to_numpy()
    before, last = np.flatnonzero(scored)[-2:]
    ids = frame.index.to_numpy().copy()
    ids[last] = ids[before]
    frame.index = pd.Index(ids, name=frame.index.name)
    frame.to_parquet(path)
    return str(ids[last])


def refused(tmp_path: Path, v5_dir: Path, *overrides: str) -> str:
    run_dir = tmp_path / "run"
    proc = run_in_process([*V5, f"data.dir={v5_dir}", f"hydra.run.dir={run_dir}", *overrides])
    line = error_line(proc)
    assert FIT_LOG not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert not (run_dir / "submission.csv").exists()
    assert not (run_dir / "metrics.json").exists()
    return line


@pytest.mark.parametrize("name", ["train.parquet", "validation.parquet", "live.parquet",
                                  "meta_model.parquet", "validation_benchmark_models.parquet",
                                  "train_benchmark_models.parquet"])
def test_a_repeated_id_names_the_file_and_the_id_before_any_fit(tmp_path, v5_copy, name):
    repeated = repeat_an_id(v5_copy / name)
    before = (v5_copy / name).read_bytes()
    line = refused(tmp_path, v5_copy)
    assert name in line and repr(repeated) in line, line
    assert (v5_copy / name).read_bytes() == before  # the user's file as it was


def test_an_id_in_both_benchmark_files_is_named(tmp_path, v5_copy):
    train = pd.read_parquet(v5_copy / "train_benchmark_models.parquet")
    validation = pd.read_parquet(v5_copy / "validation_benchmark_models.parquet")
    ids = validation.index.to_numpy().copy()
    ids[0] = train.index[0]
    validation.index = pd.Index(ids, name=validation.index.name)
    validation.to_parquet(v5_copy / "validation_benchmark_models.parquet")
    line = refused(tmp_path, v5_copy)
    assert repr(str(train.index[0])) in line and "both" in line


def test_a_repeated_id_is_found_among_many_rows_and_a_hash_match_alone_is_not_one():
    from numerlab.data.v5 import require_unique_ids

    ids = np.array([f"n{i:015x}" for i in range(200_000)], dtype=np.dtypes.StringDType())
    same_hash = np.zeros(len(ids), dtype=np.uint64)  # every hash collides: ids still differ
    require_unique_ids(ids, same_hash, "x.parquet")
    ids[123_456] = ids[7]
    with pytest.raises(NumerlabError, match=r"x.parquet: id 'n000000000000007' appears 2"):
        require_unique_ids(ids, np.arange(len(ids), dtype=np.uint64) % 1000, "x.parquet")


# --- submissions ----------------------------------------------------------------------------

def test_a_submission_is_never_written_with_a_repeated_id_or_no_rows(tmp_path):
    path = tmp_path / "submission.csv"
    with pytest.raises(NumerlabError, match=r"'a'.*more than once|more than once.*'a'"):
        write_submission(["a", "b", "a"], [0.1, 0.5, 0.9], path)
    with pytest.raises(NumerlabError, match="no live rows"):
        write_submission([], [], path)
    assert not path.exists()


def test_an_empty_live_file_is_not_called_constant_predictions(tmp_path):
    path = write_submission(["a", "b"], [0.1, 0.9], tmp_path / "submission.csv")
    with pytest.raises(NumerlabError, match="live data has no rows"):
        validate_submission(path, [])


def empty_live(v5_dir: Path) -> None:
    frame = pd.read_parquet(v5_dir / "live.parquet")
    frame.iloc[:0].to_parquet(v5_dir / "live.parquet")


def test_train_on_an_empty_live_file_fails_before_the_fit(tmp_path, v5_copy):
    empty_live(v5_copy)
    line = refused(tmp_path, v5_copy)
    assert "live.parquet has no rows" in line and "constant" not in line


@pytest.mark.slow
def test_task_live_on_an_empty_live_file_says_so(tmp_path, v5_copy):
    train = tmp_path / "train"
    proc = run_in_process([*V5, f"data.dir={v5_copy}", f"hydra.run.dir={train}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    empty_live(v5_copy)
    job = tmp_path / "live"
    line = error_line(run_in_process(["task=live", f"run_dir={train}",
                                      f"hydra.run.dir={job}"]))
    assert "live.parquet has no rows" in line and "constant" not in line
    assert not (job / "submission.csv").exists()
    assert (train / "submission.csv").is_file()  # the run's own submission is kept
