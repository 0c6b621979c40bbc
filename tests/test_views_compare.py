"""task=compare on a day's dir mixing runs on different data (a synthetic run and a v5-layout
run on another dataset: no id in common, fewer eras): it compares what can be compared, says
which eras each run was scored on and marks no "best" across runs scored on different eras."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose, run_in_process

from numerlab.cli import run_job
from numerlab.compare import load_runs

pytestmark = pytest.mark.slow  # two real LightGBM fits

OTHER_DATA = [s.replace("n_validation_eras=16", "n_validation_eras=10") for s in SMALL_DATA]


@pytest.fixture(scope="module")
def day(tmp_path_factory, small_data_dir):
    """outputs/<date> with a synthetic run, a second run on the same data, and a v5 run on a
    dataset of other ids and fewer validation eras."""
    from numerlab import data

    root = tmp_path_factory.mktemp("mixed")
    other_data = root / "other-v5"
    data.prepare(compose([*OTHER_DATA, "data.synthetic.seed=7",
                          f"data.dir={other_data}"]).data)
    day = root / "outputs" / "2026-12-07"
    run_job(compose([*SMALL_DATA, f"data.dir={small_data_dir}", *FAST_GBDT]),
            day / "10-00-00-lgbm")
    run_job(compose([*SMALL_DATA, f"data.dir={small_data_dir}", *FAST_GBDT,
                     "model.params.num_leaves=7"]), day / "10-30-00-lgbm")
    run_job(compose(["data=v5", f"data.dir={other_data}", "data.era_stride=1",
                     "data.download=false", *FAST_GBDT]), day / "11-00-00-lgbm")
    return day


@pytest.fixture(scope="module")
def report(day, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "report"
    proc = run_in_process(["task=compare", f"runs={day}", f"hydra.run.dir={out}"],
                          env={"COLUMNS": "200"})
    return out, proc


def scored(run_dir) -> list[str]:
    per_era = pd.read_parquet(run_dir / "per_era.parquet")
    return sorted(per_era.loc[per_era["corr"].notna(), "era"].astype(str))


def test_a_mixed_day_is_compared_not_aborted(day, report):
    out, proc = report
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pl.read_csv(out / "compare.csv")
    assert table["run"].to_list() == ["10-00-00-lgbm", "10-30-00-lgbm", "11-00-00-lgbm"]
    assert table["corr_mean"].is_not_null().all()
    for row in table.iter_rows(named=True):
        eras = scored(day / row["run"])
        assert row["scored_eras"] == f"{len(eras)} eras {eras[0]}–{eras[-1]}"
    groups = table["era_group"].to_list()
    assert groups[0] == groups[1] != groups[2]


def test_best_is_marked_only_among_runs_scored_on_the_same_eras(day, report):
    out, proc = report
    page = (out / "report.html").read_text()
    metrics = page[page.index("<h2>Metrics</h2>"):page.index("<h2>Cumulative")]
    rows = re.findall(r"<tr>(.*?)</tr>", metrics)[1:]
    assert len(rows) == 3
    # the v5 run is alone on its eras: nothing of it is bold, though it has the best
    # benchmark CORR mean of the three (another benchmark, on other eras)
    table = pl.read_csv(out / "compare.csv")
    assert table["benchmark_corr_mean"].arg_max() == 2
    assert "<th>benchmark corr mean</th>" in metrics
    assert "<b>" not in rows[2]
    assert "<b>" in rows[0] + rows[1]
    assert "scored on different eras" in metrics
    # the terminal table: the eras column and the same warning
    assert "scored on different eras" in " ".join(proc.stdout.split())
    assert scored(day / "11-00-00-lgbm")[0] in proc.stdout


def test_pairs_sharing_no_ids_are_empty_with_a_note(day, report):
    out, proc = report
    page = (out / "report.html").read_text()
    assert "runs 1 and 3 share 0 validation ids" in page
    assert "runs 2 and 3 share 0 validation ids" in page
    assert (out / "plots" / "compare_prediction_corr.png").is_file()  # runs 1 and 2 share all


def test_era_correlations_are_pairwise_over_shared_eras(day):
    from numerlab.compare import era_corr_correlations

    runs = load_runs([day])
    found = era_corr_correlations(runs)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        a, b = (pd.read_parquet(runs[k].run_dir / "per_era.parquet") for k in (i, j))
        joined = a.merge(b, on="era").dropna(subset=["corr_x", "corr_y"])
        assert found.shared[i, j] == len(joined) >= 3
        assert found.matrix[i, j] == pytest.approx(
            np.corrcoef(joined["corr_x"], joined["corr_y"])[0, 1], abs=1e-12)


def test_top_features_table_scrolls_inside_the_page(report):
    out, _ = report
    page = (out / "report.html").read_text()
    assert re.search(r'<div class="scroll"><table class="features">', page)
    assert ".scroll{overflow-x:auto" in page
