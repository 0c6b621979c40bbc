"""staking.scores=live: task=stake sizes from the model's resolved live rounds (fetched from
the fake Numerai into the history), and every decision lands in the history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import error_line, run_in_process
from fakes.numerai_server import KEYS_ENV
from numerai_tools.scoring import sharpe_ratio

from numerlab.history import History

LIVE_CORR = [0.01, 0.03, 0.02, 0.04]


def stake_args(fake, tmp_path: Path, *extra: str) -> list[str]:
    return ["task=stake", "staking=sharpe_scaled", "staking/caps=none",
            "staking.nmr_per_sharpe=10", "staking.min_sharpe=0.5", "staking.min_eras=3",
            "tournament.model_name=my_model", f"tournament.api_url={fake.url}",
            "tournament.backoff_s=0.01", f"history.path={tmp_path / 'history.sqlite'}",
            f"hydra.run.dir={tmp_path / 'job'}", *extra]


@pytest.fixture
def live_model(fake_numerai):
    fake_numerai.add_model("my_model")
    for number, value in enumerate(LIVE_CORR, start=1001):
        fake_numerai.scores.add("my_model", number, "canon_corr", value / 3, day=5)
        fake_numerai.scores.add("my_model", number, "canon_corr", value, day=20,
                                resolved=True)
    fake_numerai.scores.add("my_model", 1005, "canon_corr", -0.5, day=2)  # pending
    return fake_numerai


def test_stake_sizes_from_the_resolved_live_rounds(live_model, tmp_path):
    proc = run_in_process(stake_args(live_model, tmp_path, "staking.scores=live"),
                          env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "job" / "stake.json").read_text())
    # SharpeScaled: 10 NMR per unit of sharpe above 0.5, sharpe of the 4 resolved rounds
    expected = 10 * (float(sharpe_ratio(pd.Series(LIVE_CORR))) - 0.5)
    assert (record["scores"], record["n_eras"], record["run_dir"]) == ("live", 4, None)
    assert record["per_round_stake"] == pytest.approx(expected, abs=1e-8)
    [decision] = History(tmp_path / "history.sqlite").stakes()
    assert (decision.model, decision.scores, decision.policy, decision.executed) == (
        "my_model", "live", "sharpe_scaled", False)
    assert decision.proposed == pytest.approx(expected, abs=1e-8)
    assert decision.outcome == "dry run"


def test_the_subgroup_picks_live_too(live_model, tmp_path):
    proc = run_in_process(stake_args(live_model, tmp_path, "staking/scores=live"),
                          env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "job" / "stake.json").read_text())["scores"] == "live"


def test_too_few_resolved_live_rounds_is_one_line(fake_numerai, tmp_path):
    fake_numerai.add_model("my_model")
    fake_numerai.scores.add("my_model", 1001, "canon_corr", 0.02, resolved=True)
    fake_numerai.scores.add("my_model", 1002, "canon_corr", 0.02, day=3)
    line = error_line(run_in_process(stake_args(fake_numerai, tmp_path,
                                                "staking.scores=live"), env=KEYS_ENV))
    assert ("staking.scores=live: model 'my_model' has 1 resolved live round(s) in the "
            "history") in line and "fewer than 2" in line
    assert not (tmp_path / "job" / "stake.json").exists()


def test_an_unknown_score_source_is_one_line(fake_numerai, tmp_path):
    line = error_line(run_in_process(stake_args(fake_numerai, tmp_path,
                                                "staking.scores=backtest"), env=KEYS_ENV))
    assert "staking.scores='backtest' is unknown (allowed: validation, live)" in line


def test_validation_scores_stay_the_default_and_are_recorded(live_model, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    validation = [0.02, 0.01, 0.03, 0.0, 0.02, 0.025]
    pl.DataFrame({"era": [f"{i:04d}" for i in range(575, 581)], "corr": validation,
                  "mmc": [np.nan] * 6}).write_parquet(run_dir / "per_era.parquet")
    (run_dir / "metrics.json").write_text("{}")
    proc = run_in_process(stake_args(live_model, tmp_path, f"run_dir={run_dir}"),
                          env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "job" / "stake.json").read_text())
    expected = 10 * (float(sharpe_ratio(pd.Series(validation))) - 0.5)
    assert (record["scores"], record["n_eras"]) == ("validation", 6)
    assert record["per_round_stake"] == pytest.approx(expected, abs=1e-8)
    [decision] = History(tmp_path / "history.sqlite").stakes()
    assert decision.scores == "validation"
    assert "submissionScores" not in live_model.operations()  # validation needs no live


def test_backtest_refuses_live_scores_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pl.DataFrame({"era": ["0575", "0576", "0577"], "corr": [0.01, 0.02, 0.03]}
                 ).write_parquet(run_dir / "per_era.parquet")
    (run_dir / "metrics.json").write_text("{}")
    line = error_line(run_in_process(["task=backtest", "staking=fixed", "staking.scores=live",
                                      f"run_dir={run_dir}",
                                      f"hydra.run.dir={tmp_path / 'job'}"]))
    assert "task=backtest replays the run's per-era scores" in line
    assert "staking.scores=live is for task=stake" in line
    assert not (tmp_path / "job" / "metrics.json").exists()
