"""Numerai's rounds: open and close times (from the API, else the weekday schedule), the
payout multipliers of a round, and how a round is shown."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from numerlab.errors import NumerlabError

log = logging.getLogger(__name__)

TIME_FORMAT = "%a %Y-%m-%d %H:%M UTC"  # round times, as shown

# Weekday schedule, used only when the API gives no round times (Monday = 0): rounds open
# Tuesday to Saturday at OPEN_HOUR_UTC; Tuesday-Friday rounds close the same day at
# CLOSE_HOUR_UTC; since April 2026 the Saturday round (the weekend round) closes on Sunday
# at WEEKEND_CLOSE_HOUR_UTC (before: Monday 13:00).
OPEN_WEEKDAYS = (1, 2, 3, 4, 5)
OPEN_HOUR_UTC = 12
CLOSE_HOUR_UTC = 13
SATURDAY = 5
WEEKEND_ROUND_DAYS = 1  # Saturday -> Sunday
WEEKEND_CLOSE_HOUR_UTC = 14

# --- rounds -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PayoutScore:
    """One payout score of a round as the API reports it (identity kept: Numerai asks
    clients not to map unfamiliar scores onto CORR or MMC)."""

    name: str
    display_name: str | None
    version: Any
    multiplier: float | None  # defaultMultiplier
    min_multiplier: float | None
    max_multiplier: float | None


@dataclass(frozen=True)
class RoundStatus:
    """Where the tournament stands at `now` (all times UTC).

    source "api": number and times from Numerai; "rule": Numerai named no current round
    (or no times), so times follow the weekday schedule and `number` may be None."""

    now: datetime
    number: int | None
    is_open: bool
    open_time: datetime | None
    close_time: datetime | None
    next_open_time: datetime
    payout_factor: float | None = None
    payout_scores: tuple[PayoutScore, ...] = ()
    source: str = "api"

    @property
    def time_left(self) -> timedelta | None:
        """close_time - now while open, else None."""
        if not self.is_open or self.close_time is None:
            return None
        return self.close_time - self.now

    @property
    def multipliers(self) -> dict[str, float]:
        """Payout score name -> its default multiplier, as reported."""
        return {s.name: s.multiplier for s in self.payout_scores if s.multiplier is not None}

    @property
    def corr_multiplier(self) -> float | None:
        return self._family_multiplier(r"corr(20|60)?(_?v\d+)?")

    @property
    def mmc_multiplier(self) -> float | None:
        return self._family_multiplier(r"mmc(20|60)?(_?v\d+)?")

    def _family_multiplier(self, pattern: str) -> float | None:
        """The multiplier of the one payout score whose name or display name is CORR (or
        MMC) itself, optionally with a horizon/version suffix; None if there is none."""
        found = [s.multiplier for s in self.payout_scores
                 if any(re.fullmatch(pattern, (n or "").lower())
                        for n in (s.name, s.display_name))]
        return found[0] if len(found) == 1 else None

    def require_open(self, what: str) -> None:
        """NumerlabError `<what>: the Numerai round is closed; the next one opens <when>`
        unless the round is open (before an upload, and before predicting for one)."""
        if not self.is_open:
            raise NumerlabError(f"{what}: the Numerai round is closed; the next one opens "
                                f"{self.next_open_time.strftime(TIME_FORMAT)}")

    def lines(self) -> list[str]:
        """Human-readable summary, one fact a line."""
        round_name = f"round {self.number}" if self.number is not None else "current round"
        out = []
        if self.is_open and self.close_time is not None:
            out.append(f"{round_name} is open; closes {self.close_time.strftime(TIME_FORMAT)} "
                       f"({duration(self.time_left)} left)")
        else:
            closed = (f", closed {self.close_time.strftime(TIME_FORMAT)}"
                      if self.close_time is not None else "")
            out.append(f"{round_name} is closed{closed}")
        out.append(f"next round opens {self.next_open_time.strftime(TIME_FORMAT)}")
        if self.payout_factor is not None:
            out.append(f"payout factor {self.payout_factor:g}")
        for score in self.payout_scores:
            label = score.display_name or score.name
            out.append(f"payout multiplier {label}: {score.multiplier}")
        if self.source == "rule":
            out.append("(Numerai gave no round times; times follow the weekday schedule)")
        return out


def duration(delta: timedelta | None, unknown: str = "?") -> str:
    """`1d 2h 03m` (days only when there are any); `unknown` for None."""
    if delta is None:
        return unknown
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    return (f"{days}d " if days else "") + f"{rest // 60}h {rest % 60:02d}m"


def scheduled_window(open_day: date) -> tuple[datetime, datetime]:
    """(open, close) of the round opening on `open_day` by the weekday schedule."""
    opens = datetime(open_day.year, open_day.month, open_day.day, OPEN_HOUR_UTC, tzinfo=UTC)
    weekend = open_day.weekday() == SATURDAY
    close_day = open_day + timedelta(days=WEEKEND_ROUND_DAYS if weekend else 0)
    closes = datetime(close_day.year, close_day.month, close_day.day,
                      WEEKEND_CLOSE_HOUR_UTC if weekend else CLOSE_HOUR_UTC, tzinfo=UTC)
    return opens, closes


def schedule_at(now: datetime) -> tuple[datetime, datetime, datetime]:
    """(open, close) of the latest round opened at or before `now` by the weekday schedule,
    and the next opening after `now`."""
    now = utc(now)
    windows = [scheduled_window(now.date() + timedelta(days=d)) for d in range(-8, 9)
               if (now.date() + timedelta(days=d)).weekday() in OPEN_WEEKDAYS]
    opened, closes = max((w for w in windows if w[0] <= now), key=lambda w: w[0])
    next_open = min(w[0] for w in windows if w[0] > now)
    return opened, closes, next_open


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken as UTC (Numerai's times are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return utc(value)
    try:
        return utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(Decimal(str(value).replace(",", "")))
    except (InvalidOperation, ValueError):
        return None


def _payout_scores(round_info: Mapping[str, Any]) -> tuple[PayoutScore, ...]:
    scores = []
    for item in round_info.get("roundScoreConfigs") or []:
        if not isinstance(item, Mapping) or not item.get("isPayout"):
            continue
        scores.append(PayoutScore(
            name=str(item.get("name") or item.get("displayName") or "?"),
            display_name=item.get("displayName"), version=item.get("version"),
            multiplier=_as_float(item.get("defaultMultiplier")),
            min_multiplier=_as_float(item.get("minMultiplier")),
            max_multiplier=_as_float(item.get("maxMultiplier"))))
    return tuple(scores)


def round_status_from(now: datetime, current: Mapping[str, Any] | None,
                      upcoming_opens: Sequence[datetime]) -> RoundStatus:
    """RoundStatus from the API's current round (None when it named none) and the open
    times of upcoming rounds it listed; the weekday schedule fills what the API left out."""
    now = utc(now)
    rule_open, rule_close, rule_next = schedule_at(now)
    current = current or {}
    opens = _as_datetime(current.get("openTime"))
    closes = _as_datetime(current.get("closeTime")) or _as_datetime(
        current.get("closeStakingTime"))
    from_api = opens is not None and closes is not None
    if not from_api:
        opens, closes = rule_open, rule_close
    later = sorted(t for t in (utc(u) for u in upcoming_opens) if t > now)
    number = current.get("number")
    return RoundStatus(
        now=now, number=int(number) if isinstance(number, int) else None,
        is_open=opens <= now < closes, open_time=opens, close_time=closes,
        next_open_time=later[0] if later else rule_next,
        payout_factor=_as_float(current.get("payoutFactor")),
        payout_scores=_payout_scores(current), source="api" if from_api else "rule")
