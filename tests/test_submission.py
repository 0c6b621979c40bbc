"""numerlab.submission: Numerai's submission checks (numerai-tools as oracle), atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numerai_tools.submissions import validate_submission_numerai

from numerlab.errors import NumerlabError
from numerlab.submission import validate_submission, write_submission

LIVE = [f"n{i:06x}" for i in range(40)]


def good(n: int = len(LIVE)) -> pd.DataFrame:
    return pd.DataFrame({"id": LIVE[:n], "prediction": np.linspace(0.05, 0.95, n)})


def tools_accepts(frame: pd.DataFrame, live: list[str]) -> bool:
    try:
        validate_submission_numerai(pd.Series(live), frame.copy())
    except AssertionError:
        return False
    return True


def ours_accepts(frame: pd.DataFrame, live: list[str]) -> bool:
    try:
        validate_submission(frame, live)
    except NumerlabError as exc:
        assert "\n" not in str(exc)
        return False
    return True


# --- agreement with numerai-tools --------------------------------------------------------

def _duplicate(frame):
    return pd.concat([frame, frame.iloc[[3]]], ignore_index=True)


def _missing(frame):
    return frame.iloc[1:]


def _with(index, value):
    def change(frame):
        frame = frame.copy()
        frame.loc[index, "prediction"] = value
        return frame
    return change


@pytest.mark.parametrize(("change", "valid"), [
    (lambda f: f, True),
    (lambda f: f.iloc[::-1].reset_index(drop=True), True),   # any row order
    (_with(0, 0.0), True),                                   # bounds are allowed
    (_with(1, 1.0), True),
    (_duplicate, False),
    (_missing, False),
    (_with(5, np.nan), False),
    (_with(5, 1.5), False),
    (_with(5, -0.01), False),
    (lambda f: f.assign(prediction=0.5), False),              # constant
])
def test_agrees_with_numerai_tools(change, valid):
    frame = change(good())
    assert tools_accepts(frame, LIVE) is valid  # the oracle says what a case is
    assert ours_accepts(frame, LIVE) is valid


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(-32, 96).map(lambda k: k / 64), st.just(float("nan"))),
                min_size=2, max_size=12))
def test_value_checks_agree_with_numerai_tools(values):
    # Multiples of 1/64: no value sits within numerai-tools' isclose tolerance of a bound.
    live = LIVE[:len(values)]
    frame = pd.DataFrame({"id": live, "prediction": values})
    assert ours_accepts(frame, live) is tools_accepts(frame, live)


def test_stricter_than_numerai_tools_where_the_tournament_is():
    extra = pd.concat([good(), pd.DataFrame({"id": ["stranger"], "prediction": [0.5]})],
                      ignore_index=True)
    assert tools_accepts(extra, LIVE)  # numerai-tools drops ids it does not know
    with pytest.raises(NumerlabError, match=r"1 ids are not live ids \(e.g. 'stranger'\)"):
        validate_submission(extra, LIVE)
    probability = good().rename(columns={"prediction": "probability"})
    assert tools_accepts(probability, LIVE)
    with pytest.raises(NumerlabError, match="header must be exactly 'id,prediction', got "
                                            "'id,probability'"):
        validate_submission(probability, LIVE)


# --- messages ---------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    (_duplicate, r"1 ids appear more than once \(e.g. 'n000003'\)"),
    (_missing, r"1 of 40 live ids are missing \(e.g. 'n000000'\)"),
    (_with(5, np.nan), r"1 predictions are NaN or empty \(e.g. id 'n000005'\)"),
    (_with(7, 1.25), r"1 predictions are outside \[0, 1\] \(e.g. 1.25 for id 'n000007'\)"),
    (lambda f: f.assign(prediction=0.5), r"predictions are constant \(std 0\)"),
])
def test_each_problem_is_one_named_line(change, message):
    with pytest.raises(NumerlabError, match=message):
        validate_submission(change(good()), LIVE)


def test_polars_frames_and_arrays_of_ids():
    frame = pl.from_pandas(good())
    validate_submission(frame, np.array(LIVE))
    validate_submission(frame, pd.Series(LIVE))
    with pytest.raises(NumerlabError, match="live ids are missing"):
        validate_submission(frame.head(39), pl.Series(LIVE))


def test_id_as_index_gets_a_hint():
    with pytest.raises(NumerlabError, match=r"'id' is the index .*reset_index\(\)"):
        validate_submission(good().set_index("id"), LIVE)


# --- CSV files --------------------------------------------------------------------------

def test_csv_written_by_pandas_passes(tmp_path):
    path = tmp_path / "submission.csv"
    good().to_csv(path, index=False)
    validate_submission(path, LIVE)
    validate_submission(str(path), LIVE)


@pytest.mark.parametrize(("text", "message"), [
    ("prediction,id\n", "got 'prediction,id'"),
    ("id,prediction,era\n", "got 'id,prediction,era'"),
    ("ID,prediction\n", "got 'ID,prediction'"),
    (",id,prediction\n", "got ',id,prediction'"),  # pandas' to_csv with its index
    ("\ufeffid,prediction\n", "header must be exactly"),
])
def test_csv_header_must_be_exact(tmp_path, text, message):
    path = tmp_path / "submission.csv"
    path.write_text(text + "".join(f"{i},0.{k + 1}\n" for k, i in enumerate(LIVE[:5])),
                    encoding="utf-8")
    with pytest.raises(NumerlabError, match=message):
        validate_submission(path, LIVE[:5])


def test_csv_values_are_checked(tmp_path):
    path = tmp_path / "submission.csv"
    rows = [f"{i},{0.1 + k / 100}" for k, i in enumerate(LIVE[:5])]
    path.write_text("id,prediction\n" + "\n".join(rows[:4] + [f"{LIVE[4]},high"]) + "\n")
    with pytest.raises(NumerlabError, match=r"prediction 'high' is not a number"):
        validate_submission(path, LIVE[:5])
    path.write_text("id,prediction\n" + "\n".join(rows[:4] + [f"{LIVE[4]},"]) + "\n")
    with pytest.raises(NumerlabError, match=r"1 predictions are NaN or empty \(e.g. id "
                                            r"'n000004'\)"):
        validate_submission(path, LIVE[:5])
    with pytest.raises(NumerlabError, match="does not exist"):
        validate_submission(tmp_path / "nope.csv", LIVE)


def test_ids_keep_leading_zeros_in_csv(tmp_path):
    live = ["0001", "0002", "0003"]
    path = tmp_path / "submission.csv"
    path.write_text("id,prediction\n0001,0.1\n0002,0.2\n0003,0.3\n")
    validate_submission(path, live)


# --- writing ----------------------------------------------------------------------------

def test_write_submission_round_trips_exactly(tmp_path):
    predictions = np.random.default_rng(0).uniform(size=len(LIVE))
    path = write_submission(LIVE, predictions, tmp_path / "out" / "submission.csv")
    validate_submission(path, LIVE)
    back = pd.read_csv(path, dtype={"id": str})
    assert list(back.columns) == ["id", "prediction"]
    assert back["id"].tolist() == LIVE
    assert np.array_equal(back["prediction"].to_numpy(), predictions)  # bit for bit
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.csv"]


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "submission.csv"
    path.write_text("old")
    with pytest.raises(NumerlabError, match="40 ids but 3 predictions"):
        write_submission(LIVE, [0.1, 0.2, 0.3], path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_submission(LIVE, np.linspace(0, 1, len(LIVE)), path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]
