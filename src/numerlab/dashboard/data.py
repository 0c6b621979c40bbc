"""What the dashboard's panels show, gathered by calling what the tasks call: the round
(`TournamentClient.round_status`, else the weekday schedule), the configured models'
submissions and positions (`History`, `AbsStakes.book`), live scores
(`numerlab.live_results`), the runs leaderboard (`numerlab.summary`, `numerlab.compare`) and
the events log (`History.events`). No textual here and no numbers of its own: the panels
format what these return.

Two halves: `load_local` reads local files and the history database only (offline, fast,
on the UI thread); `fetch_online` talks to Numerai (keys needed; it blocks, so the app runs
it in a worker thread) and refreshes the history's live scores as task=results does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab import settings
from numerlab.errors import NumerlabError, message_line
from numerlab.history import History, PositionRow, Submission, open_history

log = logging.getLogger(__name__)

GROUP = "dashboard"
SETTINGS = ("runs", "refresh_s", "metric", "direction", "events")
SCHEDULED = "scheduled (offline)"  # where the round's times come from without the API


# --- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    runs: tuple[str, ...]     # dirs holding run dirs (outputs/, multirun/)
    refresh_s: float          # seconds between background refreshes (with keys); 0: only `r`
    metric: str               # the leaderboard's first sort key
    direction: str            # maximize | minimize
    events: int               # events shown


def read_settings(cfg: DictConfig) -> Settings:
    """The `dashboard` config checked (one-line errors naming the key)."""
    from numerlab.summary import DIRECTIONS

    group = OmegaConf.to_container(cfg.get(GROUP) or {}, resolve=True)
    if not isinstance(group, dict):
        raise NumerlabError(f"{GROUP} must be a mapping (runs, refresh_s, metric, direction)")
    settings.keys(GROUP, group, SETTINGS)
    runs = group.get("runs")
    if isinstance(runs, str):
        runs = [runs]
    if not isinstance(runs, list) or not all(isinstance(r, str) and r for r in runs):
        raise NumerlabError(f"{GROUP}.runs={runs!r} must be a list of dirs holding run dirs "
                            f"(e.g. [outputs, multirun])")
    return Settings(
        runs=tuple(runs),
        refresh_s=settings.number(f"{GROUP}.refresh_s", group.get("refresh_s"),
                                  minimum=0),
        metric=settings.text(f"{GROUP}.metric", group.get("metric")),
        direction=settings.choice(f"{GROUP}.direction", group.get("direction"),
                                  DIRECTIONS),
        events=settings.integer(f"{GROUP}.events", group.get("events"),
                                minimum=1))


def configured_models(cfg: DictConfig, store: History) -> list[str]:
    """The Numerai models the dashboard shows: `submit.models`' names (the configured
    models, as task=submit and task=results read them); without any, `tournament.model_name`
    and every model the history knows."""
    models = OmegaConf.select(cfg, "submit.models", default=None)
    if models:
        return [str(name) for name in models]
    names = [str(cfg.tournament.get("model_name"))] if cfg.tournament.get("model_name") else []
    names += [s.model for s in store.submissions()]
    names += [p.model for p in store.positions()]
    names += [s.model for s in store.scores()]
    return list(dict.fromkeys(names))


# --- what the panels show -------------------------------------------------------------------

@dataclass(frozen=True)
class RoundView:
    status: Any                # tournament.RoundStatus
    source: str                # "api" | SCHEDULED
    error: str | None = None   # why the API's answer is not shown
    configured: tuple[tuple[str, float], ...] = ()  # the payout config's multipliers


def configured_multipliers(cfg: DictConfig) -> tuple[tuple[str, float], ...]:
    """The payout group's CORR and MMC multipliers (what a backtest uses offline)."""
    payout = cfg.get("payout") or {}
    return tuple((label, float(payout[key])) for label, key in (("CORR", "corr_mult"),
                                                                ("MMC", "mmc_mult"))
                 if payout.get(key) is not None)


@dataclass(frozen=True)
class ModelRow:
    model: str
    submission: Submission | None   # this round's newest (the newest of any round offline)
    per_round_stake: float | None
    open_positions: int
    locked: float | None
    claimable: float | None
    source: str                     # "history" | "api"


@dataclass(frozen=True)
class LiveView:
    per_round: dict[str, pl.DataFrame]   # model -> live_results.per_round
    versus: dict[str, Any]               # model -> live_results.LiveVsValidation
    error: str | None = None


@dataclass(frozen=True)
class RunsView:
    frame: pl.DataFrame | None   # summary.collect + rank, with eras and model columns
    metrics: list[str]           # summary.metric_columns
    errors: list[str]            # one line per runs dir that could not be read


@dataclass
class Snapshot:
    """Everything on screen, and where it came from."""

    now: datetime
    round: RoundView
    models: list[ModelRow]
    live: LiveView
    runs: RunsView
    events: list[Any]                   # history.Event, newest first


# --- local: files and the history -----------------------------------------------------------

def offline_round(now: datetime, configured: tuple[tuple[str, float], ...] = ()
                  ) -> RoundView:
    """The round by the weekday schedule (no number: only Numerai knows it), with the
    payout config's multipliers."""
    from numerlab.tournament.rounds import round_status_from

    return RoundView(round_status_from(now, None, []), SCHEDULED, configured=configured)


def model_rows(store: History, models: Sequence[str], round_number: int | None,
               books: Mapping[str, Any] | None = None) -> list[ModelRow]:
    """One row per model: its submission this round (the newest of any round when the round
    is unknown), its stake positions from `books` (the API's `AbsStakes.book`) or else the
    history's positions."""
    rows = []
    for model in models:
        if round_number is not None:
            submission = store.latest_submission(round_number, model)
        else:
            submitted = store.submissions(model=model)
            submission = submitted[-1] if submitted else None
        book, source = (books or {}).get(model), "api"
        if book is None:
            book, source = history_book(store.positions(model=model)), "history"
        rows.append(ModelRow(model, submission, book.per_round_stake, len(book.open),
                             book.locked, book.claimable, source))
    return rows


def history_book(positions: Sequence[PositionRow]) -> Any:
    """The history's positions of one model as a `tournament.Book` (the open ones newest
    first; as claims the resolved unclaimed ones with a payout: task=results stores one only
    for the claims Numerai still holds, net of burn), so the panel reads per-round stake,
    locked and claimable the way task=status does."""
    from numerlab.tournament.stakes import Book, ChainRound, Claim, Position

    ordered = sorted(positions, key=lambda p: -p.round)
    open_ = tuple((Position(p.round, p.stake or 0.0, False, None),
                   ChainRound(p.round, None, False, None, None, None))
                  for p in ordered if not p.resolved)
    claims = tuple(Claim(p.round, p.stake or 0.0, p.payout or 0.0, 0.0)
                   for p in ordered if p.resolved and not p.claimed and p.payout is not None)
    return Book(open=open_, claims=claims)


def live_view(store: History, models: Sequence[str]) -> LiveView:
    """Per-round live scores and live-vs-validation of each model, as task=results shows
    them (numerlab.live_results)."""
    from numerlab import live_results

    try:
        per_round = {model: live_results.per_round(store, model) for model in models}
        versus = {v.model: v for v in live_results.live_vs_validation(store, models)}
    except NumerlabError as exc:
        return LiveView({}, {}, message_line(exc))
    return LiveView(per_round, versus)


def runs_view(roots: Sequence[str | Path], metric: str, direction: str) -> RunsView:
    """The finished runs under `roots`, ranked by `metric` (numerlab.summary's reading and
    ranking), named by their path (`outputs/2026-12-07/12-00-00-lgbm`), with the eras each
    was scored on and its model (numerlab.compare's reading of a run)."""
    from numerlab import summary

    frames, errors = [], []
    for root in roots:
        for source in summary.run_roots(Path(root)):
            if not summary.find_run_dirs(source):
                continue  # a root with no runs yet, or a sweep dir still empty
            try:
                frame = summary.collect(source)
            except NumerlabError as exc:
                errors.append(message_line(exc))
                continue
            frames.append(frame.with_columns(
                (pl.lit(f"{source.as_posix().rstrip('/')}/") + pl.col("name")).alias("name")))
    if not frames:
        return RunsView(None, [], errors)
    frame = pl.concat(frames, how="diagonal_relaxed").unique("run_dir", keep="first",
                                                             maintain_order=True)
    frame = _with_run_facts(frame)
    metrics = summary.metric_columns(frame.drop("eras", "model"))
    try:
        ranked = summary.rank(frame, metric if metric in metrics or not metrics
                              else metrics[0], direction)
    except NumerlabError as exc:
        return RunsView(None, metrics, [*errors, message_line(exc)])
    return RunsView(ranked, metrics, errors)


def _with_run_facts(frame: pl.DataFrame) -> pl.DataFrame:
    """`eras` (compare.era_span of the run's scored eras) and `model` (metrics.json's) of
    each finished run."""
    eras, models = [], []
    for row in frame.iter_rows(named=True):
        span, model = run_facts(Path(row["run_dir"])) if row["status"] == "ok" else ("—", None)
        eras.append(span)
        models.append(model)
    return frame.with_columns(pl.Series("eras", eras, dtype=pl.String),
                              pl.Series("model", models, dtype=pl.String))


_FACTS: dict[tuple[str, int, int], tuple[str, str | None]] = {}


def run_facts(run_dir: Path) -> tuple[str, str | None]:
    """(era span, model) of a finished run, read once per version of its metrics.json and
    per_era.parquet (a refresh rereads only the runs that changed)."""
    from numerlab.artifacts import METRICS, PER_ERA
    from numerlab.compare import era_span, read_run

    def stamp(path: Path) -> int:
        return path.stat().st_mtime_ns if path.is_file() else 0

    key = (str(run_dir), stamp(run_dir / METRICS), stamp(run_dir / PER_ERA))
    if key not in _FACTS:
        try:
            run = read_run(run_dir)
        except NumerlabError:
            return "—", None
        model = run.metrics.get("model")
        _FACTS[key] = (era_span(run.scored_eras), None if model is None else str(model))
    return _FACTS[key]


def rerank(view: RunsView, metric: str, direction: str) -> RunsView:
    """The same runs ranked by another metric (summary.rank)."""
    from numerlab import summary

    if view.frame is None:
        return view
    return replace(view, frame=summary.rank(view.frame.drop("rank"), metric, direction))


def filter_runs(frame: pl.DataFrame, text: str) -> pl.DataFrame:
    """The rows matching every word of `text`: `model=<m>` and `task=<t>` match those columns
    exactly, any other word a part of the name, overrides, model or task."""
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key in ("model", "task"):
            frame = frame.filter(pl.col(key).fill_null("") == value)
            continue
        needle = word.lower()
        frame = frame.filter(pl.any_horizontal(
            pl.col(c).fill_null("").str.to_lowercase().str.contains(needle, literal=True)
            for c in ("name", "overrides", "model", "task")))
    return frame


def load_local(cfg: DictConfig, options: Settings, now: datetime,
               metric: str | None = None, direction: str | None = None) -> Snapshot:
    """Everything from local files and the history database (nothing over the network)."""
    store = open_history(cfg.get("history"))
    models = configured_models(cfg, store)
    round_view = offline_round(now, configured_multipliers(cfg))
    return Snapshot(
        now=now, round=round_view,
        models=model_rows(store, models, None),
        live=live_view(store, models),
        runs=runs_view(options.runs, metric or options.metric, direction or options.direction),
        events=store.events(limit=options.events))


# --- online: Numerai -------------------------------------------------------------------------

def has_keys(cfg: DictConfig) -> bool:
    """Whether API keys are configured (the environment or tournament.keys_file)."""
    from numerlab.tournament import TournamentClient

    client = TournamentClient.from_config(cfg.tournament)
    return client.has_keys


@dataclass(frozen=True)
class Online:
    """What a refresh from the API brought: the round, the models' books, new live scores."""

    round: RoundView
    books: dict[str, Any]
    new_scores: int
    error: str | None = None


def fetch_online(cfg: DictConfig, models: Sequence[str], now: datetime) -> Online:
    """The round, each model's ABS book and new live scores (written into the history by
    live_results.refresh_scores, as task=results does). Blocks on the network: call it
    from a worker thread. An error is one line in `error`, never raised."""
    from numerlab.tournament import ABS, AbsStakes, TournamentClient, staking_system
    from numerlab.tournament import wallet_address as staker_of

    try:
        client = TournamentClient.from_config(cfg.tournament)
        status = client.round_status(now)
    except NumerlabError as exc:
        return Online(offline_round(now, configured_multipliers(cfg)), {}, 0,
                      message_line(exc))
    round_view = RoundView(status, "api" if status.source == "api" else SCHEDULED)
    books: dict[str, Any] = {}
    try:
        account = client.models()
        if staking_system(cfg.tournament) == ABS:
            stakes, staker = AbsStakes(client), staker_of(cfg.tournament)
            books = {m: stakes.book(m, staker, now) for m in models if m in account}
        new_scores = _refresh_scores(client, cfg, [m for m in models if m in account])
    except NumerlabError as exc:
        return Online(round_view, books, 0, message_line(exc))
    return Online(round_view, books, new_scores)


def _refresh_scores(client: Any, cfg: DictConfig, models: Sequence[str]) -> int:
    from numerlab.live_results import refresh_scores

    return len(refresh_scores(client, open_history(cfg.get("history")), models))


def merge(local: Snapshot, online: Online, cfg: DictConfig) -> Snapshot:
    """The local snapshot with what the API brought: its round (and so this round's
    submissions), the models' books."""
    store = open_history(cfg.get("history"))
    models = [row.model for row in local.models]
    number = online.round.status.number if online.round.source == "api" else None
    return replace(local, round=online.round,
                   models=model_rows(store, models, number, online.books))


# --- the `d` key ----------------------------------------------------------------------------

def submit_job_dir(base: Path, model: str, now: datetime) -> Path:
    """Where a submit started from the dashboard writes: beside the dashboard's own files."""
    return base / f"submit-{model}-{now.strftime('%Y%m%d-%H%M%S')}"


def submit_model(cfg: DictConfig, job_dir: Path, model: str) -> list[Any]:
    """The round for one model as task=submit does it (numerlab.tasks.submit.submit_round):
    a dry run unless tournament.submit=true."""
    from numerlab.tasks.submit import submit_round

    return list(submit_round(cfg, job_dir, only=[model], submit=None))


def real_upload(cfg: DictConfig) -> bool:
    """Whether `d` would upload (tournament.submit=true, task=submit's switch)."""
    from numerlab.settings import boolean

    return boolean("tournament.submit", cfg.tournament.get("submit"))


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
