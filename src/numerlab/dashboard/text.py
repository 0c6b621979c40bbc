"""How the dashboard writes times, amounts and scores (text only, no numbers of its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from numerlab.summary import format_number
from numerlab.tournament.rounds import TIME_FORMAT, duration

LOCAL_FORMAT = "%a %H:%M %Z"


def when(moment: datetime | None) -> str:
    """`Tue 2026-12-08 13:00 UTC (Tue 14:00 CET)`: UTC, then the local time."""
    if moment is None:
        return "—"
    return (f"{moment.astimezone(UTC).strftime(TIME_FORMAT)} "
            f"({moment.astimezone().strftime(LOCAL_FORMAT)})")


def until(moment: datetime | None, now: datetime) -> str:
    """`in 2h 05m` (or `2h 05m ago`)."""
    if moment is None:
        return ""
    delta = moment - now
    if delta < timedelta(0):
        return f"{duration(-delta)} ago"
    return f"in {duration(delta)}"


def clock(moment: datetime | None) -> str:
    """`HH:MM UTC` of a moment (the stale marker)."""
    return "—" if moment is None else moment.astimezone(UTC).strftime("%H:%M UTC")


def stamp(text: str | None, short: bool = False) -> str:
    """A history time (ISO, UTC) as `2026-12-08 12:31` (short: `12-08 12:31`)."""
    if not text:
        return "—"
    try:
        moment = datetime.fromisoformat(text)
        return moment.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")
    except ValueError:
        return text


def nmr(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def score(value: float | None) -> str:
    """A score as the summary writes it (`+0.0123`, `—` when undefined)."""
    return format_number(value)


def short_path(path: str | None, roots: tuple[str, ...] = ()) -> str:
    """A run dir as shown: relative to the working dir or a runs root when below one."""
    if not path:
        return "—"
    candidate = Path(path)
    for base in (Path.cwd(), *(Path(r).resolve() for r in roots)):
        try:
            return candidate.resolve().relative_to(base).as_posix()
        except ValueError:
            continue
    return candidate.as_posix()
