"""task=submit: the round for every configured model, in one invocation.

    python run.py task=submit 'submit.models={my_model: outputs/2026-12-01/10-00-00-lgbm}'
    python run.py task=submit submit=mine tournament.submit=true

`submit.models` maps a Numerai model name to what predicts for it: a finished run's dir, or
`{best_of: <dir of runs>, metric: corr_sharpe, direction: maximize}` (the best run there,
ranked by numerlab.summary as the sweep summary ranks). One invocation, holding an OS lock
beside the history database (a second one at the same time waits `submit.lock_wait_s`
seconds, 0 = refuses at once):

1. the round: closed -> says when the next opens (UTC and local) and exits 0;
2. the models: every name must be one of the account's (checked when keys are set, always
   before an upload);
3. live data brought up to date once per data dir; each model's run predicts it with its
   own features, and the submission is written and checked as Numerai checks it
   (`<job dir>/<model>/submission.csv`);
4. the upload, only with `tournament.submit=true` (else a dry run), recorded in the history
   (`history.path`) before (`sending`, with the file's sha256) and after (`sent` + upload
   id, `failed`, or `unknown`: the answer was lost). A model already sent this round with
   the same predictions is `skipped`; a row a crash left `sending` (or `unknown`) is settled
   by reading the model's submissions back from Numerai, and sent again only when it did
   not land; other predictions than the round's latest are sent again (Numerai keeps the
   latest).

One model failing (its run, its predictions, its upload) is recorded `failed` and the others
go on; the exit status is non-zero when any failed. `TRIGGER_ID` (numerai-cli's containers
set it) is stored with each row and sent with the submission. Notifications: `submitted` for
each submission sent (not for dry runs or skips), `failed` for each failure.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, live_round, locks, runs, settings, summary
from numerlab.errors import NumerlabError, message_line
from numerlab.history import (
    DRY_RUN,
    FAILED,
    SENDING,
    SENT,
    SKIPPED,
    UNKNOWN,
    History,
    Submission,
    open_history,
)
from numerlab.tasks import _send

log = logging.getLogger(__name__)

GROUP = "submit"
KEYS = ("models", "lock_wait_s")
RULE_KEYS = ("best_of", "metric", "direction")
MODEL_NAME = re.compile(r"[A-Za-z0-9_\-]+")  # Numerai model names: letters, digits, _
LOCK_SUFFIX = ".submit.lock"  # the lock file, beside history.path
SUBMISSION_RECORD = "submission.json"  # per model, in <job dir>/<model>/
RECORD = "submit.json"  # the invocation's outcomes, in the job dir
# A crashed upload counts as landed when a submission of the model was inserted after it
# began, less this much clock difference between this machine and Numerai.
CLOCK_SKEW = timedelta(minutes=2)
NOT_DONE = (FAILED, UNKNOWN)
TRIGGER_ENV = "TRIGGER_ID"


@dataclass(frozen=True)
class ModelOutcome:
    """What one invocation did for one model (status: a history submission status)."""

    model: str
    round: int | None
    status: str
    run_dir: str | None
    upload_id: str | None
    error: str | None
    rows: int | None = None


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    outcomes = submit_round(cfg, run_dir)
    failed = [o for o in outcomes if o.status in NOT_DONE]
    if failed:
        done = len(outcomes) - len(failed)
        reasons = "; ".join(f"{o.model} ({(o.error or o.status)[:200]})" for o in failed)
        raise NumerlabError(f"{done} of {len(outcomes)} models submitted; failed: {reasons}")
    return {}


# --- the configured models ------------------------------------------------------------------

def configured_models(cfg: DictConfig) -> dict[str, str]:
    """Numerai model name -> the run dir that predicts for it (`submit.models`, best_of rules
    resolved); a bad entry is one NumerlabError naming `submit.models.<name>`."""
    group = _group(cfg)
    models = group.get("models")
    if models is None:
        return {}
    if not isinstance(models, Mapping):
        raise NumerlabError(f"submit.models must map Numerai model names to run dirs, got "
                            f"{models!r}")
    return {str(name): _resolve(str(name), entry) for name, entry in models.items()}


def _group(cfg: DictConfig) -> dict[str, Any]:
    node = cfg.get(GROUP)
    group = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if group is None:
        return {}
    if not isinstance(group, Mapping):
        raise NumerlabError(f"submit must be a mapping of settings ({', '.join(KEYS)})")
    settings.keys(GROUP, group, KEYS)
    return dict(group)


def _resolve(name: str, entry: Any) -> str:
    key = f"{GROUP}.models.{name}"
    if not MODEL_NAME.fullmatch(name):
        raise NumerlabError(f"{key}: {name!r} is not a Numerai model name (letters, digits "
                            f"and _ only)")
    if isinstance(entry, str | Path):
        if not str(entry).strip():
            raise NumerlabError(f"{key} is empty: give a run dir or {{best_of: <dir>}}")
        return str(entry)
    if not isinstance(entry, Mapping):
        raise NumerlabError(f"{key}={entry!r} must be a run dir or {{best_of: <dir of runs>, "
                            f"metric: ..., direction: maximize|minimize}}")
    settings.keys(key, entry, RULE_KEYS)
    root = settings.text(f"{key}.best_of", entry.get("best_of"), what="a dir of runs")
    metric = settings.text(f"{key}.metric", entry.get("metric") or summary.DEFAULT_METRIC)
    direction = settings.choice(f"{key}.direction", entry.get("direction") or "maximize",
                                summary.DIRECTIONS)
    try:
        ranked = summary.rank(summary.collect(Path(root).expanduser()), metric, direction)
    except NumerlabError as exc:
        raise NumerlabError(f"{key}: {exc}") from None
    for row in ranked.filter(ranked["rank"].is_not_null()).iter_rows(named=True):
        if (Path(row["run_dir"]) / artifacts.MODEL_DIR).is_dir():
            log.info("%s: %s, ranked first of %s by %s (%s)", key, row["run_dir"], root,
                     metric, direction)
            return str(row["run_dir"])
    raise NumerlabError(f"{key}: no finished run with a {artifacts.MODEL_DIR}/ under {root} "
                        f"has a value of {metric}")


# --- the round ------------------------------------------------------------------------------

@dataclass
class _Round:
    """What the models of one invocation share."""

    cfg: DictConfig
    job_dir: Path
    number: int
    submit: bool
    client: Any
    store: History
    live: live_round.LiveData
    trigger_id: str | None


def submit_round(cfg: DictConfig, job_dir: str | Path, only: Sequence[str] | None = None,
                 submit: bool | None = None) -> list[ModelOutcome]:
    """The round for every configured model (or `only` these), as task=submit does: one
    outcome per model, in `submit.models` order; [] when the round is closed. `submit`
    None: `tournament.submit` decides; False forces a dry run. Raises NumerlabError (before
    anything is sent) for bad config, a model name the account lacks, or the lock held."""
    from numerlab.tournament import TournamentClient

    job_dir = Path(job_dir)
    models = _chosen(configured_models(cfg), only)
    if submit is None:
        submit = settings.boolean("tournament.submit", cfg.tournament.get("submit"))
    allow_stale = settings.boolean("tournament.allow_stale_live",
                                   cfg.tournament.get("allow_stale_live"))
    wait_s = settings.number("submit.lock_wait_s", _group(cfg).get("lock_wait_s"),
                             minimum=0)
    notifier = _notifier(cfg)
    store = open_history(cfg.get("history"))
    client = TournamentClient.from_config(cfg.tournament)
    trigger_id = os.environ.get(TRIGGER_ENV) or None
    with locks.exclusive(Path(f"{store.path}{LOCK_SUFFIX}"), wait_s, "another task=submit"):
        status = client.round_status()
        if not status.is_open:
            _say_closed(status)
            return []
        if status.number is None:
            raise NumerlabError("Numerai names no current round number; nothing submitted "
                                "(task=status shows the round)")
        _check_account(client, models, submit)
        if trigger_id:
            print(f"{TRIGGER_ENV}={trigger_id}")
        shared = _Round(cfg, job_dir, status.number, bool(submit), client, store,
                        live_round.LiveData(cfg, client if submit else None, allow_stale),
                        trigger_id)
        outcomes = [_one_model(shared, name, value) for name, value in models.items()]
    _notify(notifier, store, outcomes)
    _show(outcomes, status.number, bool(submit))
    failed = [o.model for o in outcomes if o.status in NOT_DONE]
    artifacts.write_record(job_dir, RECORD, {
        "round": status.number, "trigger_id": trigger_id,
        "outcome": FAILED if failed else "done",
        "error": f"failed: {', '.join(failed)}" if failed else None,
        "models": [asdict(o) for o in outcomes]})
    return outcomes


def _chosen(models: dict[str, str], only: Sequence[str] | None) -> dict[str, str]:
    if only is not None:
        unknown = [m for m in only if m not in models]
        if unknown:
            raise NumerlabError(f"{', '.join(unknown)}: not in submit.models (configured: "
                                f"{', '.join(models) or 'none'})")
        models = {m: models[m] for m in only}
    if not models:
        raise NumerlabError("submit.models is empty: declare your models, e.g. "
                            "'submit.models={my_model: outputs/<date>/<time>-lgbm}' or "
                            "submit=<yours> (conf/submit/<yours>.yaml)")
    return models


def _say_closed(status: Any) -> None:
    from numerlab.tournament import TIME_FORMAT

    nxt = status.next_open_time
    local = nxt.astimezone().strftime("%a %Y-%m-%d %H:%M %Z")
    line = (f"the Numerai round is closed, nothing submitted; the next one opens "
            f"{nxt.strftime(TIME_FORMAT)} ({local} local)")
    log.info(line)
    print(line)


def _check_account(client: Any, models: Mapping[str, str], submit: bool) -> None:
    """Every model name is one of the account's: checked with keys (required to submit)."""
    if not submit and not client.has_keys:
        log.info("no Numerai API keys: the model names are not checked against the account "
                 "(dry run)")
        return
    account = client.models()
    missing = [name for name in models if name not in account]
    if missing:
        raise NumerlabError(f"submit.models.{missing[0]}: this Numerai account has no model "
                            f"{missing[0]!r} (its models: {', '.join(sorted(account)) or 'none'}"
                            f"); nothing submitted")


# --- one model ------------------------------------------------------------------------------

def _one_model(r: _Round, name: str, run_value: str) -> ModelOutcome:
    out_dir = r.job_dir / name
    try:
        saved = runs.check_finished(run_value, artifacts.MODEL_DIR, r.job_dir, "submit",
                                    key=f"{GROUP}.models.{name}")
        loaded = live_round.load_run(r.cfg, saved)
        data_dir = r.live.data_dir(loaded.source)
        frame = live_round.predict(loaded, data_dir)
        submission = live_round.write_live_submission(frame, data_dir, out_dir)
    except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
        error = message_line(exc) if isinstance(exc, NumerlabError) else (
            f"{type(exc).__name__}: {message_line(exc)}")
        row = r.store.begin_submission(r.number, name, run_dir=str(run_value),
                                       config_hash=None, sha256=None, trigger_id=r.trigger_id,
                                       job_dir=str(out_dir), status=FAILED)
        r.store.finish_submission(row, FAILED, error=error)
        log.error("%s: %s", name, error)
        return ModelOutcome(name, r.number, FAILED, str(run_value), None, error)
    sha = artifacts.sha256(submission)
    facts = {"run_dir": str(saved), "config_hash": loaded.config_hash, "sha256": sha,
             "trigger_id": r.trigger_id, "job_dir": str(out_dir)}
    if not r.submit:
        r.store.begin_submission(r.number, name, **facts, status=DRY_RUN)
        _send.send_file(out_dir, submission, SUBMISSION_RECORD, None, model=name,
                        round=r.number, rows=frame.height, run_dir=str(saved))
        return ModelOutcome(name, r.number, DRY_RUN, str(saved), None, None, frame.height)
    return _upload(r, name, submission, frame.height, facts)


def upload_name(round_number: int, sha256: str) -> str:
    """The name the submission is uploaded under: the round and the predictions' hash, so
    that reading the model's submissions back finds it."""
    return f"numerlab_r{round_number}_{sha256[:16]}.csv"


def _upload(r: _Round, name: str, submission: Path, rows: int,
            facts: dict[str, Any]) -> ModelOutcome:
    from numerlab.tournament import OutcomeUnknown

    run_dir, sha = facts["run_dir"], facts["sha256"]
    try:
        _settle_unfinished(r, name)
    except NumerlabError as exc:
        error = f"cannot read back an unfinished earlier upload: {message_line(exc)}"
        return ModelOutcome(name, r.number, UNKNOWN, run_dir, None, error, rows)
    latest = r.store.latest_submission(r.number, name, statuses=(SENT,))
    if latest is not None and latest.sha256 == sha:
        row = r.store.begin_submission(r.number, name, **facts, status=SKIPPED)
        r.store.finish_submission(row, SKIPPED, upload_id=latest.upload_id)
        log.info("%s: round %d already has these predictions (upload %s): skipped", name,
                 r.number, latest.upload_id)
        return ModelOutcome(name, r.number, SKIPPED, run_dir, latest.upload_id, None, rows)
    if latest is not None:
        print(f"{name}: round {r.number} has a submission with other predictions (run "
              f"{latest.run_dir}, upload {latest.upload_id}); sending these (Numerai keeps "
              f"the latest)")
    path = submission.parent / upload_name(r.number, sha)
    shutil.copyfile(submission, path)
    row = r.store.begin_submission(r.number, name, **facts, status=SENDING)
    try:
        record = _send.send_file(
            submission.parent, path, SUBMISSION_RECORD,
            lambda: r.client.upload_predictions(path, name), model=name, round=r.number,
            rows=rows, run_dir=run_dir, trigger_id=r.trigger_id)
    except OutcomeUnknown as exc:
        status, error = UNKNOWN, message_line(exc)
    except NumerlabError as exc:
        status, error = FAILED, message_line(exc)
    except Exception as exc:  # noqa: BLE001 - after sending began: it may have landed
        status, error = UNKNOWN, f"{type(exc).__name__}: {message_line(exc)}"
    else:
        r.store.finish_submission(row, SENT, upload_id=record["upload_id"])
        return ModelOutcome(name, r.number, SENT, run_dir, record["upload_id"], None, rows)
    r.store.finish_submission(row, status, error=error)
    log.error("%s: %s", name, error)
    return ModelOutcome(name, r.number, status, run_dir, None, error, rows)


def _settle_unfinished(r: _Round, name: str) -> None:
    """Settle this round's rows of `name` left `sending` (a crash mid-upload) or `unknown`
    by reading the model's submissions back: `sent` when it landed, else `failed`."""
    pending = [s for s in r.store.submissions(model=name, round_number=r.number)
               if s.status in (SENDING, UNKNOWN)]
    if not pending:
        return
    listed = r.client.submissions(name)
    for row in pending:
        found = _landed(row, listed)
        if found is not None:
            r.store.finish_submission(row.id, SENT, upload_id=str(found.get("id")))
            print(f"{name}: the upload left {row.status} (history row {row.id}) landed on "
                  f"Numerai as submission {found.get('id')}; recorded as sent")
        else:
            r.store.finish_submission(
                row.id, FAILED, error=f"did not land on Numerai (read back: none of the "
                                      f"model's {len(listed)} submissions is it)")
            print(f"{name}: the upload left {row.status} (history row {row.id}) did not land "
                  f"on Numerai; sending again")


def _landed(row: Submission, listed: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The listed submission that is `row`'s upload: the one of its file name (round and
    hash), else one inserted after the upload began (Numerai may name files its own way)."""
    name = upload_name(row.round, row.sha256 or "")
    for item in reversed(list(listed)):
        if str(item.get("filename") or "").rsplit("/", 1)[-1] == name:
            return item
    began = datetime.fromisoformat(row.started_at) - CLOCK_SKEW
    later = [item for item in listed
             if (inserted := _time(item.get("insertedAt"))) is not None and inserted >= began]
    return later[-1] if later else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- after the round ------------------------------------------------------------------------

def _notifier(cfg: DictConfig) -> Any:
    from numerlab.notify import Notifier

    return Notifier.for_run(cfg)


def _notify(notifier: Any, store: History, outcomes: Sequence[ModelOutcome]) -> None:
    """`submitted` for each submission sent, `failed` for each failure (not for dry runs
    or skips: nothing happened on Numerai); each delivery recorded in the history."""
    from numerlab.notify import message_failed, message_submitted

    for o in outcomes:
        if o.status == SENT:
            message = message_submitted(o.model, o.round, o.upload_id)
        elif o.status in NOT_DONE:
            message = message_failed("submit", f"{o.status}: {o.error}", o.model, o.round)
        else:
            continue
        for delivery in notifier.send(*message):
            store.record_notification(delivery)


def _show(outcomes: Sequence[ModelOutcome], round_number: int, submit: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    mode = "" if submit else " (dry run: tournament.submit=true uploads)"
    table = Table(title=f"round {round_number}{mode}")
    for column in ("model", "run", "status", "upload id", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for o in outcomes:
        table.add_row(o.model, o.run_dir or "", o.status + (f": {o.error}" if o.error else ""),
                      o.upload_id or "", "" if o.rows is None else str(o.rows))
    Console(width=max(120, Console().width)).print(table)
