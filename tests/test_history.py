"""The history database: schema and migrations, WAL, one transaction per write, concurrent
writers, scores that only move forward, export."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

import polars as pl
import pytest

from numerlab import history
from numerlab.errors import NumerlabError
from numerlab.history import History, PositionRow, Score, StakeDecision


def test_a_new_file_gets_the_current_schema_in_wal_mode(tmp_path):
    store = History(tmp_path / "deep" / "h.sqlite")
    assert store.schema_version == history.SCHEMA_VERSION >= 1
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert set(history.TABLES) <= tables


def test_an_old_file_is_migrated_forward_keeping_its_rows(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    History(path).begin_submission(1001, "m", run_dir="r", config_hash="c", sha256="s",
                                   status=history.DRY_RUN)
    # a next schema version: one more column, as a later numerlab would add it
    monkeypatch.setattr(history, "MIGRATIONS",
                        (*history.MIGRATIONS, "ALTER TABLE submissions ADD COLUMN note TEXT"))
    monkeypatch.setattr(history, "SCHEMA_VERSION", len(history.MIGRATIONS))
    store = History(path)
    assert store.schema_version == history.SCHEMA_VERSION
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT model, note FROM submissions").fetchall() == [("m", None)]


def test_a_file_from_a_newer_numerlab_is_refused_in_one_line(tmp_path):
    path = tmp_path / "h.sqlite"
    History(path)
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    with pytest.raises(NumerlabError, match="newer than this numerlab") as err:
        History(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_text("these are my notes, not a database\n")
    with pytest.raises(NumerlabError, match="cannot be used") as err:
        History(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_text() == "these are my notes, not a database\n"  # untouched


def test_a_failed_transaction_leaves_nothing(tmp_path):
    store = History(tmp_path / "h.sqlite")
    with pytest.raises(RuntimeError), store.transaction() as connection:
        connection.execute("INSERT INTO submissions (round, model, status, started_at)"
                           " VALUES (1, 'm', 'sent', 'now')")
        raise RuntimeError("crash mid-write")
    assert store.submissions() == []


def test_submission_lifecycle_and_lookup(tmp_path):
    store = History(tmp_path / "h.sqlite")
    first = store.begin_submission(1001, "alpha", run_dir="outputs/a", config_hash="h1",
                                   sha256="s1", trigger_id="t-1")
    assert store.latest_submission(1001, "alpha").status == history.SENDING
    store.finish_submission(first, history.SENT, upload_id="u-1")
    store.begin_submission(1001, "beta", run_dir="outputs/b", config_hash="h2", sha256="s2",
                           status=history.DRY_RUN)
    alpha = store.latest_submission(1001, "alpha")
    assert (alpha.status, alpha.upload_id, alpha.trigger_id) == ("sent", "u-1", "t-1")
    assert alpha.finished_at is not None
    assert store.latest_submission(1002, "alpha") is None
    assert store.latest_submission(1001, "beta", statuses=[history.SENT]) is None
    with pytest.raises(NumerlabError, match="status must be one of"):
        store.finish_submission(first, "done")
    with pytest.raises(NumerlabError, match="no submission 99"):
        store.finish_submission(99, history.SENT)


def test_concurrent_writers_all_land(tmp_path):
    path = tmp_path / "h.sqlite"
    History(path)
    errors = []

    def write(worker: int) -> None:
        try:
            store = History(path)
            for i in range(25):
                row = store.begin_submission(1000 + i, f"m{worker}", run_dir=None,
                                             config_hash=None, sha256=None)
                store.finish_submission(row, history.SENT, upload_id=f"{worker}-{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = History(path).submissions()
    assert len(rows) == 100 and {r.status for r in rows} == {"sent"}
    assert len({r.upload_id for r in rows}) == 100


def test_scores_move_forward_and_a_resolved_score_is_final(tmp_path):
    store = History(tmp_path / "h.sqlite")
    day1 = Score("m", 1001, "canon_corr", 0.01, day=1)
    assert store.upsert_scores([day1]) == [day1]
    assert store.upsert_scores([day1]) == []  # nothing new
    resolved = Score("m", 1001, "canon_corr", 0.02, day=20, resolved=True)
    assert store.upsert_scores([resolved]) == [resolved]
    assert store.upsert_scores([Score("m", 1001, "canon_corr", 0.5, day=3)]) == []
    [kept] = store.scores(model="m")
    assert (kept.value, kept.day, kept.resolved) == (0.02, 20, True)
    assert store.scores(resolved=False) == []


def test_positions_stakes_notifications_and_events(tmp_path):
    store = History(tmp_path / "h.sqlite")
    store.upsert_positions([PositionRow("m", 1001, "0xabc", 5.0)])
    store.upsert_positions([PositionRow("m", 1001, "0xabc", 5.0, payout=0.4, resolved=True)])
    [position] = store.positions()
    assert (position.payout, position.resolved) == (0.4, True)
    store.record_stake(StakeDecision("m", 1002, "abs", "sharpe_scaled", "live", 5.0, 6.0,
                                     executed=False, outcome="dry run"))

    @dataclass
    class Delivery:  # what notify.Delivery carries
        event: str
        target: str
        ok: bool
        title: str
        body: str
        error: str | None

    store.record_notification(Delivery("failed", "json://127.0.0.1:1", False, "t", "b",
                                       "refused"))
    store.begin_submission(1002, "m", run_dir=None, config_hash=None, sha256=None,
                           status=history.FAILED)
    kinds = [e.kind for e in store.events()]
    assert sorted(kinds) == ["notification", "stake", "submission"]
    assert store.stakes()[0].scores == "live"
    assert store.notifications()[0].ok is False
    assert len(store.events(limit=2)) == 2


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_every_table(tmp_path, fmt):
    store = History(tmp_path / "h.sqlite")
    store.upsert_scores([Score("m", 1001, "mmc", -0.003, day=2)])
    paths = store.export(tmp_path / "out", fmt)
    assert sorted(p.name for p in paths) == sorted(f"{t}.{fmt}" for t in history.TABLES)
    read = pl.read_parquet if fmt == "parquet" else pl.read_csv
    scores = read(tmp_path / "out" / f"scores.{fmt}")
    assert scores["value"].to_list() == [-0.003] and scores["name"].to_list() == ["mmc"]
    assert read(tmp_path / "out" / f"submissions.{fmt}").height == 0
    with pytest.raises(NumerlabError, match="parquet or csv"):
        store.export(tmp_path / "out", "xlsx")


def test_open_history_names_the_key(tmp_path):
    with pytest.raises(NumerlabError, match="history.path"):
        history.open_history({"path": ""})
    assert history.open_history({"path": str(tmp_path / "h.db")}).path == tmp_path / "h.db"
