"""task=compare on a real sweep: the table, the correlations (checked against pandas), the
plots and the self-contained report.html; bad run dirs are one line and exit status 2."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import SMALL_DATA, run_cli, run_in_process

from numerlab.compare import era_corr_correlation, load_runs, prediction_correlation

pytestmark = pytest.mark.slow  # a real `python run.py -m` sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, small_data_dir):
    sweep_dir = tmp_path_factory.mktemp("sweep") / "multirun"
    proc = run_cli(["-m", *SMALL_DATA, f"data.dir={small_data_dir}",
                    "model.num_boost_round=40", "model=lgbm,xgboost",
                    f"hydra.sweep.dir={sweep_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "report"
    proc = run_cli(["task=compare", f"runs={sweep}", f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_compare_csv_holds_each_runs_metrics_named_by_overrides(sweep, report):
    out, proc = report
    table = pl.read_csv(out / "compare.csv")
    assert table["run"].to_list() == ["model=lgbm", "model=xgboost"]
    for row in table.iter_rows(named=True):
        metrics = json.loads((sweep / f"{row['run_dir'].rsplit('/', 1)[-1]}/metrics.json")
                             .read_text())
        for key in ("corr_mean", "corr_sharpe", "mmc_mean", "max_feature_exposure"):
            assert row[key] == pytest.approx(metrics[key], rel=1e-12)
    assert "model=lgbm" in proc.stdout and "model=xgboost" in proc.stdout
    assert "runs compared" in proc.stdout


def test_report_html_is_self_contained_with_every_plot(report):
    out, _ = report
    page = (out / "report.html").read_text()
    images = re.findall(r'src="([^"]+)"', page)
    assert len(images) == 3 and all(i.startswith("data:image/png;base64,") for i in images)
    assert "href=" not in page
    for name in ("compare_cumulative.png", "compare_prediction_corr.png",
                 "compare_era_corr.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "model=xgboost" in page and "Top features by exposure" in page
    assert "Top features by gain" in page
    features = pl.read_csv(out / "compare_features.csv")
    assert set(features["run"]) == {"model=lgbm", "model=xgboost"}


def test_listed_run_dirs_compare_like_the_sweep_dir(sweep, tmp_path):
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = tmp_path / "listed"
    proc = run_in_process(["task=compare", f"runs=[{runs[0]},{runs[1]}]",
                           f"hydra.run.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pl.read_csv(out / "compare.csv")["run"].to_list() == ["model=lgbm", "model=xgboost"]


def test_prediction_correlation_matches_pandas_ranks(sweep):
    runs = load_runs([sweep])
    labels, matrix = prediction_correlation(runs)
    assert labels == ["model=lgbm", "model=xgboost"]
    frames = [pd.read_parquet(r.run_dir / "predictions/validation.parquet") for r in runs]
    joined = frames[0].merge(frames[1][["id", "prediction"]], on="id", suffixes=("_a", "_b"))
    ranks = joined.groupby("era")[["prediction_a", "prediction_b"]].rank(pct=False)
    counts = joined.groupby("era")["id"].transform("count")
    ranks = ranks.sub(0.5).div(counts, axis=0)
    expected = np.corrcoef(ranks["prediction_a"], ranks["prediction_b"])[0, 1]
    assert matrix[0, 1] == pytest.approx(expected, abs=1e-12)
    assert matrix[0, 0] == pytest.approx(1.0) and 0.3 < matrix[0, 1] < 1


def test_era_corr_correlation_matches_numpy(sweep):
    runs = load_runs([sweep])
    _, matrix = era_corr_correlation(runs)
    a, b = (pd.read_parquet(r.run_dir / "per_era.parquet") for r in runs)
    joined = a.merge(b, on="era")
    assert matrix[0, 1] == pytest.approx(np.corrcoef(joined["corr_x"], joined["corr_y"])[0, 1])


def test_a_run_dir_without_metrics_json_is_one_line(sweep, tmp_path):
    broken = tmp_path / "unfinished"
    shutil.copytree(next(p for p in sweep.iterdir() if p.name.startswith("0-")), broken)
    (broken / "metrics.json").unlink()
    proc = run_in_process(["task=compare", f"runs=[{broken}]",
                           f"hydra.run.dir={tmp_path / 'out'}"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: runs: {broken} has no metrics.json (the run did not finish)")
    proc = run_in_process(["task=compare", f"hydra.run.dir={tmp_path / 'out2'}"])
    assert proc.returncode == 2 and "runs=None: name the run dirs" in proc.stderr
    assert not (tmp_path / "out" / "report.html").exists()
