"""GBDT fits show a rich bar of rounds (done/total, elapsed, ETA) on a terminal, as the
neural fits show Lightning's bar; it ends at the round an early-stopped fit stopped on, and
logs or captured output (no terminal) get no bar at all."""

from __future__ import annotations

import re

import numpy as np
import pytest

from numerlab.data.dataset import Dataset
from numerlab.models.base import FitContext
from numerlab.models.gbdt import LGBMModel, XGBModel

ROUNDS = 25
BAR = re.compile(r"fitting (\w+) .*?(\d+)/(\d+) rounds (\d+:\d\d:\d\d) eta")
MODELS = {
    "lgbm": lambda stop: LGBMModel({"objective": "regression", "learning_rate": 0.5,
                                    "num_leaves": 4, "verbosity": -1, "num_threads": 1},
                                   ROUNDS, stop),
    "xgboost": lambda stop: XGBModel({"objective": "reg:squarederror", "eta": 0.5,
                                      "max_depth": 2, "nthread": 1}, ROUNDS, stop),
}


def _rows(n: int, seed: int, noise: float) -> Dataset:
    """int8 bins 0..4 in 4 eras; the target is one feature's bin, plus noise."""
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 5, (n, 3), dtype=np.int8)
    target = np.clip(features[:, 0] / 4 + noise * rng.standard_normal(n), 0, 1)
    return Dataset(ids=np.array([f"r{i}" for i in range(n)]),
                   eras=np.array([f"{1 + i * 4 // n:04d}" for i in range(n)], dtype=object),
                   features=features, feature_names=["a", "b", "c"],
                   target=target.astype(np.float32), target_name="target")


def _bars(err: str) -> list[tuple[str, int, int]]:
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err).replace("\r", "\n")
    return [(m[1], int(m[2]), int(m[3])) for m in BAR.finditer(plain)]


@pytest.mark.parametrize("name", list(MODELS))
def test_the_bar_counts_the_rounds_to_the_total_on_a_terminal(name, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: stderr is a terminal
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    MODELS[name](None).fit(_rows(400, 0, 0.3), None, FitContext(seed=0, run_dir=tmp_path))
    bars = _bars(capsys.readouterr().err)
    assert bars, "no progress bar was drawn"
    assert all(label == name and total == ROUNDS for label, _, total in bars), bars
    assert bars[-1][1] == ROUNDS, bars


@pytest.mark.parametrize("name", list(MODELS))
def test_an_early_stopped_fit_ends_its_bar_at_the_round_it_stopped(name, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    model = MODELS[name](2)
    # pure noise: the holdout's error stops improving within a few rounds
    model.fit(_rows(400, 1, 5.0), _rows(200, 2, 5.0),
              FitContext(seed=0, run_dir=tmp_path, holdout=True))
    # the best round (LightGBM counts from 1, XGBoost from 0) and the patience after it
    stopped = model.best_iteration + (name == "xgboost") + 2
    assert stopped < ROUNDS, "the fit did not stop early: the test shows nothing"
    bars = _bars(capsys.readouterr().err)
    assert bars[-1][1:] == (stopped, stopped), bars


@pytest.mark.parametrize("name", list(MODELS))
def test_no_bar_where_stderr_is_no_terminal(name, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    MODELS[name](None).fit(_rows(400, 0, 0.3), None, FitContext(seed=0, run_dir=tmp_path))
    out = capsys.readouterr()
    assert "rounds" not in out.err + out.out and "\x1b" not in out.err, out.err[-500:]


def test_the_settings_probe_draws_no_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")
    MODELS["lgbm"](None).check(FitContext(seed=0, run_dir=tmp_path))
    assert not _bars(capsys.readouterr().err)
