"""W&B tracking, for real in offline mode: metrics arrive, secrets never do."""

from __future__ import annotations

import json
import time

import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose

from numerlab.errors import NumerlabError
from numerlab.tracking import scrub

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def wandb_records(path):
    """Protobuf records of an offline `.wandb` file: a 7-byte file header, then a LevelDB
    log (32 KiB blocks of checksum(4) length(2, LE) type(1) chunks: 1 full, 2 first,
    3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, block, pending = path.read_bytes(), 7, 32768, b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        chunk = raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_scrub_drops_secret_looking_keys():
    cfg = {"tournament": {"public_id": "p", "secret_key": "s", "model_name": "m"},
           "logger": {"api_key": "k"}, "model": {"params": {"learning_rate": 0.1}}}
    assert scrub(cfg) == {"tournament": {"model_name": "m"}, "logger": {},
                          "model": {"params": {"learning_rate": 0.1}}}


@pytest.mark.slow  # W&B starts its wandb-core process
def test_wandb_offline_run_logs_metrics_without_secrets(tmp_path, small_data_dir, monkeypatch):
    from numerlab.cli import run_job

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose([*SMALL_DATA, *FAST_GBDT, f"data.dir={small_data_dir}", "logger=wandb",
                   "logger.project=numerlab-test"])
    run_dir = tmp_path / "run"
    metrics = run_job(cfg, run_dir)

    runs = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1
    # wandb-core writes the file in the background: wait (bounded) for the run's exit record
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(runs[0])):
        assert time.monotonic() < deadline, "offline run never finished writing"
        time.sleep(0.2)
    summary, config, history_steps = {}, {}, 0
    for record in wandb_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                            for u in record.summary.update})
        elif kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({u.key: json.loads(u.value_json) for u in items})
        elif kind == "history":
            history_steps += 1
    assert summary["corr_mean"] == metrics["corr_mean"]
    assert summary["n_eras"] == metrics["n_eras"]
    assert config["model"]["params"]["learning_rate"] > 0
    assert "logger" not in config
    assert history_steps >= metrics["n_eras"]  # one step per validation era
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_a_bad_wandb_mode_names_where_it_was_set(monkeypatch):
    from numerlab.tracking import build_tracker

    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(NumerlabError, match=r"^logger.mode='sometimes' is unknown \(allowed: "
                                            r"offline, online, disabled\)"):
        build_tracker(compose(["logger=wandb", "logger.mode=sometimes"]).logger)
    monkeypatch.setenv("WANDB_MODE", "later")
    with pytest.raises(NumerlabError, match=r"^WANDB_MODE='later' is unknown"):
        build_tracker(compose(["logger=wandb"]).logger)
