"""Issue #18 (perf): a run says where its time goes, and says so when FNC or neutralization
fits eras that have no more rows than features (a meaningless, slow fit)."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
from conftest import FAST_GBDT, run_in_process

from numerlab import phases, scoring
from numerlab.postprocess import neutralize_per_era

PHASES = ("load", "fit", "predict", "score", "write")


def era_rows(n_eras: int, rows_per_era: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_eras * rows_per_era
    eras = np.repeat([f"{e:04d}" for e in range(n_eras)], rows_per_era)
    features = rng.integers(0, 5, (n, n_features)).astype(np.int8)
    frame = pl.DataFrame({"era": eras, "prediction": rng.standard_normal(n),
                          "target": rng.integers(0, 5, n) / 4})
    return frame, features


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "numerlab.scoring" and r.levelno == logging.WARNING]


def test_fnc_warns_once_when_eras_have_no_more_rows_than_features(caplog) -> None:
    frame, features = era_rows(n_eras=3, rows_per_era=12, n_features=12)
    with caplog.at_level(logging.WARNING, logger="numerlab.scoring"):
        scoring.per_era_scores(frame, features=features)
    lines = warnings_of(caplog)
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    assert lines[0].startswith("FNC: 3 of 3 eras") and "12 features" in lines[0], lines[0]
    assert "fewest: 12 rows" in lines[0], lines[0]


def test_fnc_warning_counts_only_the_short_eras(caplog) -> None:
    frame, features = era_rows(n_eras=2, rows_per_era=40, n_features=10)
    short = pl.DataFrame({"era": ["0009"] * 8, "prediction": np.linspace(0, 1, 8),
                          "target": np.arange(8) % 5 / 4})
    features = np.concatenate([features, np.arange(80, dtype=np.int8).reshape(8, 10) % 5])
    with caplog.at_level(logging.WARNING, logger="numerlab.scoring"):
        scoring.per_era_scores(pl.concat([frame, short]), features=features)
    (line,) = warnings_of(caplog)
    assert "1 of 3 eras" in line and "fewest: 8 rows" in line, line


def test_no_warning_when_every_era_has_more_rows_than_features(caplog) -> None:
    frame, features = era_rows(n_eras=3, rows_per_era=13, n_features=12)
    with caplog.at_level(logging.WARNING, logger="numerlab.scoring"):
        scoring.per_era_scores(frame, features=features)
    assert warnings_of(caplog) == []


def test_neutralization_warns_too(caplog) -> None:
    frame, features = era_rows(n_eras=2, rows_per_era=6, n_features=9)
    with caplog.at_level(logging.WARNING, logger="numerlab.scoring"):
        neutralize_per_era(frame["prediction"].to_numpy(), features, frame["era"].to_numpy(),
                           proportion=0.5)
    (line,) = warnings_of(caplog)
    assert line.startswith("neutralization: 2 of 2 eras"), line


def test_fnc_of_a_matrix_is_fnc_of_the_same_columns_in_the_frame() -> None:
    frame, features = era_rows(n_eras=4, rows_per_era=60, n_features=5)
    names = [f"f{j}" for j in range(5)]
    with_columns = frame.with_columns(pl.from_numpy(features, schema=names, orient="row"))
    from_matrix = scoring.per_era_scores(frame, features=features)
    from_frame = scoring.per_era_scores(with_columns, features=names)
    np.testing.assert_array_equal(from_matrix["fnc"].to_numpy(), from_frame["fnc"].to_numpy())


def test_a_feature_matrix_of_the_wrong_length_is_one_line() -> None:
    frame, features = era_rows(n_eras=2, rows_per_era=20, n_features=3)
    with pytest.raises(scoring.NumerlabError, match=r"shape \(39, 3\) for 40 scored rows"):
        scoring.per_era_scores(frame, features=features[:-1])


# --- phase timing -----------------------------------------------------------------------


def test_nested_phases_count_their_own_time_and_sum_into_the_recording(caplog) -> None:
    clock = iter([0.0, 1.0, 4.0, 10.0])  # outer start, inner start, inner end, outer end

    with caplog.at_level(logging.INFO, logger="numerlab.phases"), \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(phases.time, "perf_counter", lambda: next(clock))
        with phases.recording() as totals, phases.phase("score"), phases.phase("write"):
            pass
    assert totals == {"write": 3.0, "score": 7.0}
    assert [r.getMessage() for r in caplog.records] == ["phase write: 3.00 s",
                                                        "phase score: 7.00 s"]


def test_a_failing_phase_is_still_recorded() -> None:
    with phases.recording() as totals:
        with pytest.raises(ValueError), phases.phase("fit"):
            raise ValueError("boom")
    assert set(totals) == {"fit"}


@pytest.mark.slow
def test_a_run_logs_every_phase_and_writes_timings_and_the_fnc_warning(tmp_path) -> None:
    run_dir = tmp_path / "run"
    # 24 features (features=all) against eras of ~20 rows: FNC is underdetermined
    proc = run_in_process([f"data.dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}",
                           "data.synthetic.n_train_eras=48", "data.synthetic.n_validation_eras=16",
                           "data.synthetic.rows_per_era=20", "data.synthetic.n_features=24",
                           "features=all", *FAST_GBDT])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_text = (run_dir / "run.log").read_text()
    for name in PHASES:
        assert f"phase {name}: " in log_text, name
    warned = [line for line in log_text.splitlines() if "numerlab.scoring][WARNING]" in line]
    assert len(warned) == 1 and "FNC: " in warned[0], warned
    timings = json.loads((run_dir / phases.TIMINGS).read_text())
    assert set(timings) == set(PHASES)
    assert all(seconds >= 0 for seconds in timings.values())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not any("phase" in key or "timing" in key for key in metrics)
