"""task=submit brings Numerai's live data up to date once per invocation and each model's run
predicts it with its own features: two runs of one v5 data dir (the small and the medium
feature set), a new round's live.parquet served by the fake Numerai."""

from __future__ import annotations

import io
import json
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import compose, run_in_process
from fakes.numerai_server import KEYS_ENV

from numerlab import history
from numerlab.data.layout import META_MODEL_FILE, REQUIRED_FILES, SPLIT_NAMES, benchmark_file
from numerlab.tasks.submit import submit_round

pytestmark = pytest.mark.slow  # two LightGBM fits

VERSION = "v5.3"
V5_FILES = [*REQUIRED_FILES, META_MODEL_FILE, *(benchmark_file(s) for s in SPLIT_NAMES)]
SMALL_PARAMS = {"n_train_eras": 48, "n_validation_eras": 16, "n_test_eras": 2,
                "rows_per_era": 150, "n_features": 24, "n_live_rows": 100}


def test_live_data_is_refreshed_once_and_each_run_reads_its_own_features(
        tmp_path, fake_numerai, monkeypatch):
    from numerlab.data.synthetic import generate

    source = generate(tmp_path / "numerai" / VERSION, SMALL_PARAMS, seed=0)
    for name in V5_FILES:
        fake_numerai.add_dataset(f"{VERSION}/{name}", source / name)
    for name, value in KEYS_ENV.items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    common = ["data=v5", f"data.dir={data_dir}", f"data.version={VERSION}",
              f"tournament.api_url={fake_numerai.url}", "tournament.backoff_s=0",
              "model.num_boost_round=20"]
    runs = {}
    for features in ("small", "medium"):
        runs[features] = tmp_path / features
        proc = run_in_process([*common, f"features={features}",
                               f"hydra.run.dir={runs[features]}"])
        assert proc.returncode == 0, proc.stderr[-3000:]

    # the next round: Numerai serves new live data
    table = pq.read_table(source / "live.parquet")
    new_ids = [f"r2_{i:05d}" for i in range(table.num_rows)]
    table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(new_ids))
    pq.write_table(table, tmp_path / "live.parquet")
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", tmp_path / "live.parquet")
    fake_numerai.add_model("small_model")
    fake_numerai.add_model("medium_model")
    fake_numerai.open_round(1001)
    before = len(fake_numerai.state.requests)
    cfg = compose([*common, "task=submit", "tournament.submit=true",
                   f"submit.models={{small_model: '{runs['small']}', "
                   f"medium_model: '{runs['medium']}'}}",
                   f"history.path={tmp_path / 'history.sqlite'}"])
    outcomes = submit_round(cfg, tmp_path / "job")

    assert [o.status for o in outcomes] == [history.SENT, history.SENT]
    live_gets = [r for r in fake_numerai.state.requests[before:]
                 if r.method == "GET" and r.path == f"/files/{VERSION}/live.parquet"]
    downloads = [r for r in live_gets if r.headers.get("Range") != "bytes=0-0"]
    looks = [r for r in live_gets if r.headers.get("Range") == "bytes=0-0"]
    assert (len(downloads), len(looks)) == (1, 1)  # fetched once, checked current once
    assert (data_dir / "live.parquet").read_bytes() == (tmp_path / "live.parquet").read_bytes()
    sent = {s.model_id: pd.read_csv(io.BytesIO(s.content), dtype={"id": str})
            for s in fake_numerai.state.submissions}
    for frame in sent.values():
        assert sorted(frame["id"]) == new_ids
    small, medium = (sent[fake_numerai.state.models[m].id] for m in ("small_model",
                                                                      "medium_model"))
    live = pd.read_parquet(tmp_path / "live.parquet").reset_index()
    counts = {}
    for name, frame in (("small", small), ("medium", medium)):  # each its own run's model
        booster = lightgbm.Booster(model_file=str(runs[name] / "model" / "lgbm.txt"))
        features = json.loads((runs[name] / "model" / "numerlab_model.json").read_text())[
            "feature_names"]
        counts[name] = len(features)
        expected = pd.Series(booster.predict(live[features].to_numpy(np.float32)),
                             index=live["id"])
        got = frame.set_index("id")["prediction"]
        assert got.rank().equals(expected.loc[got.index].rank())
    assert counts == {"small": 6, "medium": 12}  # features.json's sets of the 24
    assert not small["prediction"].equals(medium["prediction"])
    assert Path(tmp_path / "job" / "submit.json").is_file()

    # the next round's live file cannot be fetched: tried once, both models fail with its line
    table = table.set_column(table.schema.get_field_index("id"), "id",
                             pa.array([f"r3_{i:05d}" for i in range(table.num_rows)]))
    pq.write_table(table, tmp_path / "live3.parquet")
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", tmp_path / "live3.parquet")
    fake_numerai.open_round(1002)
    fake_numerai.fail_next(None, 403, path=f"/files/{VERSION}/live.parquet")
    before = len(fake_numerai.state.requests)
    failed = submit_round(cfg, tmp_path / "job3")
    assert [o.status for o in failed] == [history.FAILED, history.FAILED]
    assert failed[0].error == failed[1].error
    assert "bringing live.parquet" in failed[0].error and "up to date failed" in failed[0].error
    live_gets = [r for r in fake_numerai.state.requests[before:]
                 if r.method == "GET" and r.path == f"/files/{VERSION}/live.parquet"]
    assert len(live_gets) == 1
    assert len(fake_numerai.state.submissions) == 2  # nothing more sent
