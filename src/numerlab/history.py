"""The history of the tournament rounds numerlab took part in: one SQLite file at
`history.path` (stdlib sqlite3, no server).

What it holds, one table each:

- `submissions`: every submission attempt: round, Numerai model, the run dir that
  predicted it, the hash of that run's config, the sha256 of the file sent, when, the
  upload id, the status (`sending` while it is on its way: a row left `sending` is a crash
  mid-upload whose outcome is unknown, read Numerai back before sending again; `sent`,
  `dry run`, `failed`, `unknown`, `skipped`), the error line and the `TRIGGER_ID` of the
  invocation;
- `scores`: the live scores Numerai reports per round and model (numerapi
  `submission_scores`: one row per round, model and score name, the latest day of it,
  resolved or not);
- `positions`: the stake positions per round and model (ABS: stake locked, payout, claimed);
- `stakes`: the stake decisions numerlab made (policy, current and proposed stake, whether
  it was executed, the outcome);
- `notifications`: every notification sent (event, redacted target, ok, title, body, error).

The schema is versioned (`PRAGMA user_version`) and migrated forward on open, in one
transaction, so two processes opening an old file at once migrate it once. The database is
in WAL mode (readers never block the writer); every write is one `BEGIN IMMEDIATE`
transaction on its own short-lived connection, with a busy timeout, so concurrent writers
(two `task=submit`s, the dashboard's refresh) wait for each other instead of failing.
Nothing secret is stored: callers pass redacted texts (notify.Delivery is redacted).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from numerlab.errors import NumerlabError

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another one's transaction

# submission statuses
SENDING = "sending"    # written before the upload starts; left behind by a crash
SENT = "sent"
DRY_RUN = "dry run"
FAILED = "failed"
UNKNOWN = "unknown"    # the answer was lost after sending: it may have been applied
SKIPPED = "skipped"    # already submitted this round with the same predictions
STATUSES = (SENDING, SENT, DRY_RUN, FAILED, UNKNOWN, SKIPPED)

# Schema migrations: MIGRATIONS[i] takes a database at version i to version i + 1.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        round INTEGER NOT NULL,
        model TEXT NOT NULL,
        run_dir TEXT,
        config_hash TEXT,
        sha256 TEXT,
        status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
        upload_id TEXT,
        error TEXT,
        trigger_id TEXT,
        job_dir TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX submissions_by_round ON submissions (round, model);
    CREATE TABLE scores (
        model TEXT NOT NULL,
        round INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        percentile REAL,
        day INTEGER,
        resolved INTEGER NOT NULL DEFAULT 0,
        resolve_date TEXT,
        fetched_at TEXT NOT NULL,
        PRIMARY KEY (model, round, name)
    );
    CREATE TABLE positions (
        model TEXT NOT NULL,
        round INTEGER NOT NULL,
        staker TEXT NOT NULL DEFAULT '',
        stake REAL,
        payout REAL,
        resolved INTEGER NOT NULL DEFAULT 0,
        claimed INTEGER NOT NULL DEFAULT 0,
        fetched_at TEXT NOT NULL,
        PRIMARY KEY (model, round, staker)
    );
    CREATE TABLE stakes (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL,
        round INTEGER,
        system TEXT,
        policy TEXT,
        scores TEXT,
        current REAL,
        proposed REAL,
        mode TEXT,
        executed INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        detail TEXT,
        decided_at TEXT NOT NULL
    );
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        target TEXT NOT NULL,
        ok INTEGER NOT NULL,
        title TEXT,
        body TEXT,
        error TEXT,
        sent_at TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = ("submissions", "scores", "positions", "stakes", "notifications")


def now_text(moment: datetime | None = None) -> str:
    """A UTC time as stored: ISO 8601 with the offset, to the second."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Submission:
    id: int
    round: int
    model: str
    run_dir: str | None
    config_hash: str | None
    sha256: str | None
    status: str
    upload_id: str | None
    error: str | None
    trigger_id: str | None
    job_dir: str | None
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class Score:
    """One live score Numerai reported: `name` is its display name (e.g. `canon_corr`,
    `mmc`, `bmc`), the value of its latest `day` and whether the round has resolved."""
    model: str
    round: int
    name: str
    value: float | None
    percentile: float | None = None
    day: int | None = None
    resolved: bool = False
    resolve_date: str | None = None
    fetched_at: str | None = None


@dataclass(frozen=True)
class PositionRow:
    model: str
    round: int
    staker: str
    stake: float | None
    payout: float | None = None
    resolved: bool = False
    claimed: bool = False
    fetched_at: str | None = None


@dataclass(frozen=True)
class StakeDecision:
    model: str
    round: int | None
    system: str | None
    policy: str | None
    scores: str | None          # validation | live: what the policy sized from
    current: float | None
    proposed: float | None
    mode: str | None = None
    executed: bool = False
    outcome: str | None = None
    detail: str | None = None   # JSON of the plan
    decided_at: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class NotificationRow:
    event: str
    target: str
    ok: bool
    title: str | None
    body: str | None
    error: str | None = None
    sent_at: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class Event:
    """One line of the log of what happened: a submission, a stake decision or a
    notification, for `events()` (the dashboard's Events panel, task=results)."""
    time: str
    kind: str        # submission | stake | notification
    model: str | None
    round: int | None
    status: str      # the submission's status, the stake's outcome, ok/failed
    text: str


class History:
    """The history database at `path` (created with its directory on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._migrate()

    def __repr__(self) -> str:
        return f"History({str(self.path)!r})"

    # --- connections and transactions -------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None)
        except sqlite3.Error as exc:
            raise NumerlabError(f"cannot open the history database {self.path}: {exc}; "
                                f"set history.path to a writable file") from None
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so two
        writers queue instead of failing at commit), committed on success, rolled back on
        any error."""
        with self._connection() as connection:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._connection() as connection:
            try:
                return connection.execute(sql, parameters).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None

    def _unusable(self, exc: Exception) -> NumerlabError:
        return NumerlabError(f"the history database {self.path} cannot be used: {exc}")

    def _migrate(self) -> None:
        if self.path.exists() and not self.path.is_file():
            raise NumerlabError(f"history.path {self.path} is not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise NumerlabError(
                f"the history database {self.path} has schema version {version}, newer than "
                f"this numerlab's {SCHEMA_VERSION}: upgrade numerlab")
        with self.transaction() as connection:
            # read again under the write lock: another process may have migrated meanwhile
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[number]):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    # --- submissions ------------------------------------------------------------------

    def begin_submission(self, round_number: int, model: str, *, run_dir: str | None,
                         config_hash: str | None, sha256: str | None,
                         trigger_id: str | None = None, job_dir: str | None = None,
                         status: str = SENDING) -> int:
        """Record a submission about to be sent (status `sending`) or settled at once
        (`dry run`, `skipped`, `failed` before sending); returns its row id."""
        _check_status(status)
        with self.transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO submissions (round, model, run_dir, config_hash, sha256, status,"
                " trigger_id, job_dir, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(round_number), model, run_dir, config_hash, sha256, status, trigger_id,
                 job_dir, now_text(), None if status == SENDING else now_text()))
            return int(cursor.lastrowid)

    def finish_submission(self, submission_id: int, status: str, *,
                          upload_id: str | None = None, error: str | None = None) -> None:
        """Settle a submission recorded by `begin_submission`."""
        _check_status(status)
        with self.transaction() as connection:
            updated = connection.execute(
                "UPDATE submissions SET status = ?, upload_id = COALESCE(?, upload_id),"
                " error = ?, finished_at = ? WHERE id = ?",
                (status, upload_id, error, now_text(), int(submission_id))).rowcount
        if updated != 1:
            raise NumerlabError(f"no submission {submission_id} in the history {self.path}")

    def submissions(self, *, model: str | None = None, round_number: int | None = None,
                    status: str | None = None) -> list[Submission]:
        """Submissions, oldest first, filtered by model, round and status."""
        where, parameters = _where(model=model, round=round_number, status=status)
        rows = self._read(f"SELECT * FROM submissions{where} ORDER BY id", parameters)
        return [Submission(**dict(row)) for row in rows]

    def latest_submission(self, round_number: int, model: str,
                          statuses: Iterable[str] | None = None) -> Submission | None:
        """The newest submission of `model` in `round_number` (with one of `statuses`)."""
        wanted = set(statuses) if statuses is not None else None
        rows = [s for s in self.submissions(model=model, round_number=round_number)
                if wanted is None or s.status in wanted]
        return rows[-1] if rows else None

    # --- live scores and positions ----------------------------------------------------

    def upsert_scores(self, scores: Iterable[Score]) -> list[Score]:
        """Store live scores (one per model, round and name; a later day replaces an earlier
        one) and return those that are new or changed, e.g. a round that just resolved."""
        changed = []
        with self.transaction() as connection:
            for score in scores:
                old = connection.execute(
                    "SELECT value, day, resolved FROM scores"
                    " WHERE model = ? AND round = ? AND name = ?",
                    (score.model, int(score.round), score.name)).fetchone()
                new = (score.value, score.day, int(bool(score.resolved)))
                if old is not None and tuple(old) == new:
                    continue
                if old is not None and old["resolved"] and not score.resolved:
                    continue  # a resolved score is final
                connection.execute(
                    "INSERT OR REPLACE INTO scores (model, round, name, value, percentile, day,"
                    " resolved, resolve_date, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (score.model, int(score.round), score.name, score.value, score.percentile,
                     score.day, int(bool(score.resolved)), score.resolve_date, now_text()))
                changed.append(score)
        return changed

    def scores(self, *, model: str | None = None, name: str | None = None,
               resolved: bool | None = None) -> list[Score]:
        """Live scores by model, round and name."""
        where, parameters = _where(model=model, name=name,
                                   resolved=None if resolved is None else int(resolved))
        rows = self._read(f"SELECT * FROM scores{where} ORDER BY model, round, name",
                          parameters)
        return [Score(**{**dict(row), "resolved": bool(row["resolved"])}) for row in rows]

    def upsert_positions(self, positions: Iterable[PositionRow]) -> None:
        with self.transaction() as connection:
            for position in positions:
                connection.execute(
                    "INSERT OR REPLACE INTO positions (model, round, staker, stake, payout,"
                    " resolved, claimed, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (position.model, int(position.round), position.staker or "",
                     position.stake, position.payout, int(bool(position.resolved)),
                     int(bool(position.claimed)), now_text()))

    def positions(self, *, model: str | None = None) -> list[PositionRow]:
        where, parameters = _where(model=model)
        rows = self._read(f"SELECT * FROM positions{where} ORDER BY model, round", parameters)
        return [PositionRow(**{**dict(row), "resolved": bool(row["resolved"]),
                               "claimed": bool(row["claimed"])}) for row in rows]

    # --- stake decisions and notifications --------------------------------------------

    def record_stake(self, decision: StakeDecision) -> int:
        values = {**asdict(decision), "executed": int(bool(decision.executed)),
                  "decided_at": decision.decided_at or now_text()}
        values.pop("id")
        with self.transaction() as connection:
            cursor = connection.execute(
                f"INSERT INTO stakes ({', '.join(values)}) VALUES "
                f"({', '.join('?' for _ in values)})", tuple(values.values()))
            return int(cursor.lastrowid)

    def stakes(self, *, model: str | None = None) -> list[StakeDecision]:
        where, parameters = _where(model=model)
        rows = self._read(f"SELECT * FROM stakes{where} ORDER BY id", parameters)
        return [StakeDecision(**{**dict(row), "executed": bool(row["executed"])})
                for row in rows]

    def record_notification(self, notification: Any) -> int:
        """Record one notification attempt: a notify.Delivery or a NotificationRow (any
        object with event, target, ok, title, body, error)."""
        row = NotificationRow(event=notification.event, target=notification.target,
                              ok=bool(notification.ok), title=notification.title,
                              body=notification.body, error=notification.error)
        with self.transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO notifications (event, target, ok, title, body, error, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.event, row.target, int(row.ok), row.title, row.body, row.error,
                 now_text()))
            return int(cursor.lastrowid)

    def notifications(self) -> list[NotificationRow]:
        rows = self._read("SELECT * FROM notifications ORDER BY id")
        return [NotificationRow(**{**dict(row), "ok": bool(row["ok"])}) for row in rows]

    # --- views ------------------------------------------------------------------------

    def events(self, limit: int | None = None) -> list[Event]:
        """What happened, newest first: submissions, stake decisions, notifications."""
        events = [Event(s.finished_at or s.started_at, "submission", s.model, s.round,
                        s.status, _submission_text(s)) for s in self.submissions()]
        events += [Event(d.decided_at or "", "stake", d.model, d.round, d.outcome or "",
                         _stake_text(d)) for d in self.stakes()]
        events += [Event(n.sent_at or "", "notification", None, None,
                         "ok" if n.ok else "failed",
                         f"{n.event} -> {n.target}: {n.title}"
                         + (f" ({n.error})" if n.error else ""))
                   for n in self.notifications()]
        events.sort(key=lambda e: e.time, reverse=True)
        return events[:limit] if limit is not None else events

    def table(self, name: str) -> list[dict[str, Any]]:
        """The rows of one table as dicts (for export and display)."""
        if name not in TABLES:
            raise NumerlabError(f"no history table {name!r}; the tables: {', '.join(TABLES)}")
        return [dict(row) for row in self._read(f"SELECT * FROM {name}")]

    def export(self, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
        """Every table as `<out_dir>/<table>.<parquet|csv>` (written atomically)."""
        import polars as pl

        from numerlab.artifacts import atomic_file

        if fmt not in ("parquet", "csv"):
            raise NumerlabError(f"history export format must be parquet or csv, not {fmt!r}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in TABLES:
            frame = pl.DataFrame(self.table(name), schema=self._columns(name))
            path = out / f"{name}.{fmt}"
            with atomic_file(path, "wb") as handle:
                if fmt == "parquet":
                    frame.write_parquet(handle)
                else:
                    frame.write_csv(handle)
            written.append(path)
        return written

    def _columns(self, table: str) -> dict[str, Any]:
        import polars as pl

        kinds = {"INTEGER": pl.Int64, "REAL": pl.Float64, "TEXT": pl.String}
        rows = self._read(f"PRAGMA table_info({table})")
        return {row["name"]: kinds.get(row["type"], pl.String) for row in rows}


def open_history(cfg_history: Mapping[str, Any] | None) -> History:
    """The history at `history.path` of a config (`history: {path: ...}`)."""
    from numerlab.settings import text

    path = text("history.path", (cfg_history or {}).get("path"))
    return History(path)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise NumerlabError(f"submission status must be one of {', '.join(STATUSES)}, "
                            f"not {status!r}")


def _where(**conditions: Any) -> tuple[str, list[Any]]:
    used = {key: value for key, value in conditions.items() if value is not None}
    if not used:
        return "", []
    return (" WHERE " + " AND ".join(f"{key} = ?" for key in used), list(used.values()))


def _submission_text(s: Submission) -> str:
    text = f"round {s.round} {s.model}: {s.status}"
    if s.upload_id and s.status == SENT:
        text += f" (upload {s.upload_id})"
    if s.error:
        text += f": {s.error}"
    return text


def _stake_text(d: StakeDecision) -> str:
    def amount(value: float | None) -> str:
        return "?" if value is None else f"{value:g} NMR"

    text = (f"stake {d.model}: {amount(d.current)} -> {amount(d.proposed)}"
            f" ({d.policy or 'policy?'}, from {d.scores or 'validation'} scores)")
    return text + (f", {d.outcome}" if d.outcome else "")


def row_dict(row: Any) -> dict[str, Any]:
    """A history dataclass as a dict (for JSON records)."""
    return {f.name: getattr(row, f.name) for f in fields(row)}


def to_json(rows: Iterable[Any]) -> str:
    return json.dumps([row_dict(r) for r in rows], indent=2)
