"""The one place that talks to Numerai: datasets, rounds, models, stakes and uploads.

Everything goes over numerapi 3.1.x, with what numerapi leaves out:

- Where calls go. numerapi posts every GraphQL call to the module constant
  `numerapi.base_api.API_TOURNAMENT_URL`. Instead of patching that global for the
  duration of a call (which two clients with different URLs, or two threads, would race
  on), `TournamentClient` uses a subclass of `numerapi.NumerAPI` whose `raw_query` is
  overridden: every numerapi method it calls (`get_models`, `stake_get`, `list_rounds`,
  `stake_change`, ...) keeps its own GraphQL text but sends it through this module's
  transport to the client's `api_url`. The module constant is never read or written.
- Timeouts, retries, circuit breaker. numerapi's `raw_query` has no timeout and retries
  only 5xx with fixed sleeps. Here every request (GraphQL, download, upload) carries a
  (connect, read) timeout of `timeout_s`; transient failures (5xx, timeouts, connection
  errors, a body cut short) are retried by tenacity with exponential backoff plus jitter,
  at most `max_attempts` times; 4xx and authentication errors are never retried. A
  mutation (submission, stake change) is only retried when the server cannot have applied
  it (connect failure, 502/503/504), so a lost answer never doubles a stake change. After
  `breaker_threshold` consecutive failed attempts the circuit breaker opens and every call
  fails at once with one line, for `breaker_reset_s`; then one trial call is let through.
- Errors. numerapi turns HTTP errors into `{}` (then `KeyError: 'data'`), GraphQL errors
  into `ValueError`, and a missing field into `TypeError`/`KeyError`. None of that reaches
  the user: every failure is a one-line `NumerlabError` saying what to do (which
  environment variables hold the keys, which config key to raise, ...). The API keys never
  appear in a message or a log line (server texts are redacted as well).
- Transfers. Dataset downloads, submission and model uploads are done here on the same
  transport (numerapi's own do not check the PUT's status, resume a download by appending
  whatever the server sends, and have no retry); the GraphQL around them (dataset URL,
  upload auth, create) goes through `raw_query` like every other call.

numerapi (and requests, tenacity) are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from numerlab import settings
from numerlab.data.layout import (
    BENCHMARK_SUFFIX,
    MANIFEST_FILE,
    META_MODEL_FILE,
    REQUIRED_FILES,
)
from numerlab.errors import NumerlabError, message_line

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

T = TypeVar("T")

CLASSIC_TOURNAMENT = 8  # numerapi's NumerAPI.tournament_id: Numerai Classic
DATA_MAJOR_VERSION = 5  # latest_version() picks the newest v5.x

TIME_FORMAT = "%a %Y-%m-%d %H:%M UTC"  # round times, as shown
TEMP_SUFFIX = ".temp"
DOWNLOAD_CHUNK_BYTES = 1 << 20

# Weekday schedule, used only when the API gives no round times (Monday = 0): rounds open
# Tuesday to Saturday at OPEN_HOUR_UTC; Tuesday-Friday rounds close the same day at
# CLOSE_HOUR_UTC, the Saturday round (the weekend round) on Monday at CLOSE_HOUR_UTC.
OPEN_WEEKDAYS = (1, 2, 3, 4, 5)
OPEN_HOUR_UTC = 12
CLOSE_HOUR_UTC = 13
SATURDAY = 5
WEEKEND_ROUND_DAYS = 2  # Saturday -> Monday

MAX_BACKOFF_S = 60.0  # cap of one exponential backoff wait (before jitter)

# What the tasks read of the `tournament` group besides the client's settings.
TASK_KEYS = ("model_name", "submit", "execute_stake")

# GraphQL numerapi 3.1.1 has no standalone method for (its download/upload methods do
# the transfer themselves); same operations and arguments as numerapi sends.
DATASET_URL_QUERY = """
query ($filename: String!, $round: Int, $tournament: Int) {
  dataset(filename: $filename, round: $round, tournament: $tournament)
}"""
SUBMISSION_AUTH_QUERY = """
query ($filename: String!, $tournament: Int!, $modelId: String) {
  submission_upload_auth(filename: $filename, tournament: $tournament, modelId: $modelId) {
    filename
    url
  }
}"""
CREATE_SUBMISSION_MUTATION = """
mutation ($filename: String!, $tournament: Int!, $modelId: String, $triggerId: String) {
  create_submission(filename: $filename, tournament: $tournament, modelId: $modelId,
                    triggerId: $triggerId, source: "numerapi") {
    id
  }
}"""
MODEL_UPLOAD_AUTH_QUERY = """
query ($filename: String!, $modelId: String) {
  computePickleUploadAuth(filename: $filename, modelId: $modelId) {
    filename
    url
  }
}"""
CREATE_MODEL_UPLOAD_MUTATION = """
mutation ($filename: String!, $tournament: Int!, $modelId: String) {
  createComputePickleUpload(filename: $filename, tournament: $tournament, modelId: $modelId) {
    id
  }
}"""

# GraphQL error texts that mean "your keys are wrong or lack the scope".
_AUTH_WORDS = re.compile(r"auth|token|api key|credential|permission|scope|forbidden|login",
                         re.IGNORECASE)


# --- errors -----------------------------------------------------------------------------

class NumeraiApiError(NumerlabError):
    """Numerai answered, with an error about the request (not a transport failure)."""


class CircuitOpenError(NumerlabError):
    """The circuit breaker is open: Numerai failed too often in a row; nothing was sent."""


class _ServerError(Exception):
    """A 5xx answer: transient."""

    def __init__(self, status: int, where: str):
        super().__init__(f"HTTP {status} from {where}")
        self.status = status


class _IncompleteBody(Exception):
    """A download ended before its announced size: transient, resumed with Range."""


# --- config -----------------------------------------------------------------------------

GROUP = "tournament"
"""Config path of the client's keys, used in error messages."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: per-request timeout, attempts, backoff base, breaker settings.

    Wait before retry k (k = 1, 2, ...) is min(backoff_s * 2**(k-1), MAX_BACKOFF_S) plus a
    uniform jitter in [0, backoff_s], so clients retrying together spread out."""

    timeout_s: float
    max_attempts: int
    backoff_s: float
    breaker_threshold: int
    breaker_reset_s: float


def _settings(cfg: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The values of a `tournament` config that `cls`'s fields name, each required (the
    defaults live in conf/tournament/)."""
    names = [f.name for f in fields(cls)]
    settings.required(GROUP, cfg, names)
    return {name: cfg[name] for name in names}


def check_config_keys(cfg: Mapping[str, Any]) -> None:
    """NumerlabError for a key of the `tournament` group that nothing reads (a typo such as
    `+tournament.submitt=true` must not upload nothing silently)."""
    known = ["api_url", *(f.name for f in fields(RetryPolicy)),
             *(f.name for f in fields(KeySource)), *TASK_KEYS]
    settings.keys(GROUP, cfg, known)


def retry_policy(cfg: Mapping[str, Any]) -> RetryPolicy:
    """The RetryPolicy of a `tournament` config (values checked, one-line errors)."""
    v = _settings(cfg, RetryPolicy)
    return RetryPolicy(
        timeout_s=settings.number(f"{GROUP}.timeout_s", v["timeout_s"], above=0),
        max_attempts=settings.integer(f"{GROUP}.max_attempts", v["max_attempts"], minimum=1),
        backoff_s=settings.number(f"{GROUP}.backoff_s", v["backoff_s"], minimum=0),
        breaker_threshold=settings.integer(f"{GROUP}.breaker_threshold",
                                           v["breaker_threshold"], minimum=1),
        breaker_reset_s=settings.number(f"{GROUP}.breaker_reset_s", v["breaker_reset_s"],
                                        minimum=0))


# --- keys -------------------------------------------------------------------------------

def read_keys_file(path: str | Path, public_id_env: str, secret_key_env: str
                   ) -> tuple[str | None, str | None]:
    """(public id, secret key) from a dotenv-style file: lines `NAME=value` (optionally
    `export NAME=value`, quoted values, `#` comments), looked up under the two names.

    The file must live outside any git work tree, so that it cannot be committed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NumerlabError(f"tournament.keys_file {path} does not exist")
    repo = _git_work_tree(path.resolve())
    if repo is not None:
        raise NumerlabError(f"tournament.keys_file {path} is inside the git repository "
                            f"{repo}; move it outside (e.g. ~/.numerai/keys.env) so it is "
                            f"never committed")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NumerlabError(f"cannot read tournament.keys_file {path}: "
                            f"{message_line(exc)}") from None
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values.get(public_id_env) or None, values.get(secret_key_env) or None


def _git_work_tree(path: Path) -> Path | None:
    """The nearest parent of `path` holding a `.git` entry, or None."""
    for parent in path.parents:
        if (parent / ".git").exists():
            return parent
    return None


@dataclass(frozen=True)
class KeySource:
    """Where the API keys come from: the two variables named `public_id_env` and
    `secret_key_env`, read from `keys_file` when it is set (a dotenv-style file outside the
    repository), else from the environment."""

    public_id_env: str
    secret_key_env: str
    keys_file: str | None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> KeySource:
        v = _settings(cfg, cls)
        env_name = "the name of an environment variable"
        return cls(
            public_id_env=settings.text(f"{GROUP}.public_id_env", v["public_id_env"],
                                        what=env_name).strip(),
            secret_key_env=settings.text(f"{GROUP}.secret_key_env", v["secret_key_env"],
                                         what=env_name).strip(),
            keys_file=settings.text(f"{GROUP}.keys_file", v["keys_file"] or None,
                                    optional=True, what="a file path"))

    def keys(self, environ: Mapping[str, str] | None = None
             ) -> tuple[str | None, str | None, str]:
        """(public id, secret key, where to set them) as found now; a key not found is
        None (an error only when a call needs it)."""
        public_env, secret_env = self.public_id_env, self.secret_key_env
        if self.keys_file:
            public_id, secret_key = read_keys_file(self.keys_file, public_env, secret_env)
            return public_id, secret_key, (f"{public_env} and {secret_env} in "
                                           f"tournament.keys_file {self.keys_file}")
        env = os.environ if environ is None else environ
        return (env.get(public_env) or None, env.get(secret_env) or None,
                f"the environment variables {public_env} and {secret_env} "
                f"(tournament.public_id_env / secret_key_env, or tournament.keys_file)")


def _missing_keys_message(public_id: str | None, secret_key: str | None,
                          keys_hint: str) -> str | None:
    """One line naming what is missing, or None when both keys are there."""
    if public_id and secret_key:
        return None
    if not public_id and not secret_key:
        missing = "the public id and the secret key are"
    else:
        missing = "the public id is" if not public_id else "the secret key is"
    return f"Numerai API keys missing: {missing} not set; set {keys_hint}"


# --- transport --------------------------------------------------------------------------

class CircuitBreaker:
    """Opens after `threshold` consecutive failed attempts; while open, `check` raises
    CircuitOpenError without sending anything. After `reset_s` one trial is let through:
    a success closes it, a failure opens it again at once."""

    def __init__(self, threshold: int, reset_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.last_failure = ""

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def check(self, what: str) -> None:
        if self.opened_at is None:
            return
        waited = self._clock() - self.opened_at
        if waited >= self.reset_s:
            self.opened_at = None  # half-open: one trial; failures stays at threshold
            self.failures = self.threshold - 1
            return
        raise CircuitOpenError(
            f"{what} not sent: Numerai failed {self.failures} times in a row (last: "
            f"{self.last_failure}); circuit breaker open for another "
            f"{self.reset_s - waited:.0f}s (tournament.breaker_threshold, breaker_reset_s)")

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self, reason: str) -> None:
        self.failures += 1
        self.last_failure = reason
        if self.failures >= self.threshold:
            self.opened_at = self._clock()


class Transport:
    """HTTP with a timeout on every request, tenacity retries of transient failures and a
    circuit breaker shared by every call of one client."""

    def __init__(self, policy: RetryPolicy, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 redact: Callable[[str], str] = str):
        import requests

        self.policy = policy
        self.session = session or requests.Session()
        self.breaker = CircuitBreaker(policy.breaker_threshold, policy.breaker_reset_s, clock)
        self._sleep = sleep
        self._redact = redact

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = self.policy.backoff_s
        return min(base * 2 ** (attempt - 1), MAX_BACKOFF_S) + random.uniform(0, base)

    def request(self, method: str, url: str, *, what: str, idempotent: bool = True,
                **kwargs: Any) -> requests.Response:
        """One HTTP request (retried as the policy says); 5xx raise, other statuses return."""
        def send() -> requests.Response:
            response = self.send_once(method, url, **kwargs)
            if response.status_code >= 500:
                response.close()
                raise _ServerError(response.status_code, _where(url))
            return response

        return self.call(send, what, idempotent=idempotent)

    def send_once(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        timeout = (self.policy.timeout_s, self.policy.timeout_s)
        return self.session.request(method, url, timeout=timeout, **kwargs)

    def call(self, attempt: Callable[[], T], what: str, *, idempotent: bool = True) -> T:
        """`attempt()` until it succeeds, raises a non-transient error, or the attempts
        run out; each failure counts towards the circuit breaker. Errors become one-line
        NumerlabErrors naming `what`."""
        import tenacity

        def guarded() -> T:
            self.breaker.check(what)
            try:
                result = attempt()
            except Exception as exc:
                if _is_transport_failure(exc):
                    self.breaker.record_failure(self._describe(exc))
                raise
            self.breaker.record_success()
            return result

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: %s; retry %d of %d in %.1fs", what, self._describe(exc),
                        state.attempt_number, self.policy.max_attempts - 1,
                        state.upcoming_sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts),
            wait=lambda state: self.backoff(state.attempt_number),
            retry=tenacity.retry_if_exception(lambda exc: _is_retryable(exc, idempotent)),
            sleep=self._sleep, before_sleep=before_sleep, reraise=True)
        try:
            return retrying(guarded)
        except NumerlabError:
            raise
        except Exception as exc:
            if not _is_transport_failure(exc):
                raise
            attempts = retrying.statistics.get("attempt_number", 1)
            raise NumerlabError(self._give_up_message(what, exc, attempts, idempotent)
                                ) from None

    def _describe(self, exc: BaseException | None) -> str:
        import requests

        if exc is None:
            return "unknown failure"
        if isinstance(exc, requests.Timeout):
            return f"no answer within {self.policy.timeout_s:g}s"
        if isinstance(exc, requests.ConnectionError):
            return self._redact(_connection_failure(exc))
        return self._redact(message_line(exc))[:200]

    def _give_up_message(self, what: str, exc: BaseException, attempts: int,
                         idempotent: bool) -> str:
        import requests

        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if not idempotent and not _is_retryable(exc, idempotent=False):
            return (f"{what}: {self._describe(exc)}; it may still have been applied, check "
                    f"numer.ai before trying again")
        if isinstance(exc, requests.Timeout):
            return (f"{what}: {self._describe(exc)} ({tries}); raise tournament.timeout_s "
                    f"if your connection is slow")
        if isinstance(exc, requests.ConnectionError):
            return (f"{what}: {self._describe(exc)} ({tries}); check your network and "
                    f"tournament.api_url")
        return f"{what}: {self._describe(exc)} ({tries}, tournament.max_attempts)"


def _connection_failure(exc: requests.ConnectionError) -> str:
    """"cannot connect to HOST ([Errno 111] Connection refused)" from what requests raises
    (urllib3's MaxRetryError wrapped: its "Max retries exceeded" is not ours to report)."""
    request = getattr(exc, "request", None)
    host = _where(request.url) if request is not None and request.url else "Numerai"
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = message_line(reason if isinstance(reason, BaseException) else exc)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return f"cannot connect to {host} ({errno.group() if errno else text[:120]})"


def _is_transport_failure(exc: BaseException) -> bool:
    """Failures that say the server or the network is in trouble (breaker counts them)."""
    import requests

    return isinstance(exc, (_ServerError, _IncompleteBody, requests.Timeout,
                            requests.ConnectionError, requests.exceptions.ChunkedEncodingError))


def _is_retryable(exc: BaseException, idempotent: bool) -> bool:
    """Transient failures; for a mutation only those that prove it was not applied."""
    import requests

    if not _is_transport_failure(exc):
        return False
    if idempotent:
        return True
    if isinstance(exc, _ServerError):
        return exc.status in (502, 503, 504)  # gateway / unavailable: never reached the app
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        import urllib3

        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _where(url: str) -> str:
    """Host and path of a URL, without its query (presigned URLs carry signatures)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def operation_name(query: str) -> str:
    """The first field of a GraphQL document: `query ($x: Int) { rounds(...) {...} }` ->
    "rounds"; names the call in messages."""
    match = re.search(r"\{\s*(\w+)", query)
    return match.group(1) if match else "query"


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
    days = WEEKEND_ROUND_DAYS if open_day.weekday() == SATURDAY else 0
    close_day = open_day + timedelta(days=days)
    closes = datetime(close_day.year, close_day.month, close_day.day, CLOSE_HOUR_UTC,
                      tzinfo=UTC)
    return opens, closes


def schedule_at(now: datetime) -> tuple[datetime, datetime, datetime]:
    """(open, close) of the latest round opened at or before `now` by the weekday schedule,
    and the next opening after `now`."""
    now = _utc(now)
    windows = [scheduled_window(now.date() + timedelta(days=d)) for d in range(-8, 9)
               if (now.date() + timedelta(days=d)).weekday() in OPEN_WEEKDAYS]
    opened, closes = max((w for w in windows if w[0] <= now), key=lambda w: w[0])
    next_open = min(w[0] for w in windows if w[0] > now)
    return opened, closes, next_open


def _utc(moment: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken as UTC (Numerai's times are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value)))
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
    now = _utc(now)
    rule_open, rule_close, rule_next = schedule_at(now)
    current = current or {}
    opens = _as_datetime(current.get("openTime"))
    closes = _as_datetime(current.get("closeTime")) or _as_datetime(
        current.get("closeStakingTime"))
    from_api = opens is not None and closes is not None
    if not from_api:
        opens, closes = rule_open, rule_close
    later = sorted(t for t in (_utc(u) for u in upcoming_opens) if t > now)
    number = current.get("number")
    return RoundStatus(
        now=now, number=int(number) if isinstance(number, int) else None,
        is_open=opens <= now < closes, open_time=opens, close_time=closes,
        next_open_time=later[0] if later else rule_next,
        payout_factor=_as_float(current.get("payoutFactor")),
        payout_scores=_payout_scores(current), source="api" if from_api else "rule")


# --- downloads --------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteFile:
    """What identifies the bytes behind a presigned URL: size and validators."""

    size: int | None
    etag: str | None
    last_modified: str | None

    def same_as(self, recorded: Mapping[str, Any]) -> bool:
        """Same object as a manifest record: sizes equal and, where both sides have one,
        the ETag (else Last-Modified) equal."""
        if self.size is None or recorded.get("size") != self.size:
            return False
        if self.etag and recorded.get("etag"):
            return recorded["etag"] == self.etag
        if self.last_modified and recorded.get("last_modified"):
            return recorded["last_modified"] == self.last_modified
        return True

    def record(self, source: str) -> dict[str, Any]:
        return {"source": source, "size": self.size, "etag": self.etag,
                "last_modified": self.last_modified}


def _remote_file(response: requests.Response) -> RemoteFile:
    headers = response.headers
    size = None
    if response.status_code == 206:
        total = headers.get("Content-Range", "").rpartition("/")[2]
        size = int(total) if total.isdigit() else None
    elif headers.get("Content-Length", "").isdigit():
        size = int(headers["Content-Length"])
    return RemoteFile(size=size, etag=headers.get("ETag"),
                      last_modified=headers.get("Last-Modified"))


def _body_chunks(response: requests.Response, timeout_s: float) -> Iterator[bytes]:
    """The raw body, chunk by chunk as it arrives. `read1` hands over what came before a
    connection breaks (requests' iter_content drops the unfinished chunk, up to
    DOWNLOAD_CHUNK_BYTES a break), so the next attempt resumes from the last byte
    received. A broken or stalled stream raises _IncompleteBody (transient)."""
    import urllib3

    while True:
        try:
            chunk = response.raw.read1(DOWNLOAD_CHUNK_BYTES, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise _IncompleteBody(f"no data within {timeout_s:g}s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise _IncompleteBody(f"connection broken ({message_line(exc)[:120]})") from None
        if not chunk:
            return
        yield chunk


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class Manifest:
    """`data_dir/.numerlab-downloads.json`: per local file name, the RemoteFile it was
    downloaded from ("files") and the one a half-downloaded `.temp` belongs to ("partial",
    so a resume can ask `If-Range` with the right ETag). Written atomically."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / MANIFEST_FILE
        self.files: dict[str, dict[str, Any]] = {}
        self.partial: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.files = dict(data.get("files") or {})
                self.partial = dict(data.get("partial") or {})
            except (OSError, ValueError, AttributeError):
                # Only our own bookkeeping is lost: files get checked again.
                log.warning("ignoring unreadable %s", self.path)

    def save(self) -> None:
        from numerlab.artifacts import atomic_file

        with atomic_file(self.path) as out:
            out.write(json.dumps({"files": self.files, "partial": self.partial}, indent=1))


def verify_download(path: Path, name: str) -> None:
    """NumerlabError unless the file opens as what its name says: a parquet footer (read
    by pyarrow) for .parquet, a JSON document for .json; other files are not checked."""
    suffix = Path(name).suffix
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif suffix == ".json":
            json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        kind = "parquet" if suffix == ".parquet" else "JSON"
        raise NumerlabError(f"downloaded {name} is not a readable {kind} file "
                            f"({message_line(exc)}); it was not kept, download again"
                            ) from None


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), disable=not enabled,
                  transient=False) as progress:
        yield progress


# --- numerapi ---------------------------------------------------------------------------

_NUMERAPI_CLASS: type | None = None


def _numerapi_class() -> type:
    """numerapi.NumerAPI whose raw_query goes through a TournamentClient (built once)."""
    global _NUMERAPI_CLASS
    if _NUMERAPI_CLASS is None:
        from numerapi import NumerAPI

        class RoutedNumerAPI(NumerAPI):
            # numerapi's __init__ is not called: it runs logging.basicConfig (configuring
            # the root logger of the whole program) and reads keys from the environment
            # and a .env file behind our back. These are the attributes it would set.
            def __init__(self, client: TournamentClient):
                self.logger = logging.getLogger("numerapi.base_api")
                self.token = None
                self.show_progress_bars = False
                self.tournament_id = CLASSIC_TOURNAMENT
                self.global_data_dir = "."
                self._client = client

            def raw_query(self, query: str, variables: dict | None = None,
                          authorization: bool = False, **_ignored: Any) -> dict:
                # numerapi's own retries/delay/backoff arguments are ignored: the
                # client's policy applies to every call.
                return self._client.graphql(query, variables, authorization=authorization)

        _NUMERAPI_CLASS = RoutedNumerAPI
    return _NUMERAPI_CLASS


# --- client -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StakeChange:
    """A stake change request as Numerai recorded it."""

    model_name: str
    action: str  # "increase" | "decrease"
    amount: float
    status: str | None
    due_date: datetime | None


class TournamentClient:
    """Numerai over numerapi, with timeouts, retries, a circuit breaker and one-line errors.

    Build it with `TournamentClient.from_config(cfg.tournament)` (keys from the environment
    or a keys file named there) or directly:
        TournamentClient("https://api-tournament.numer.ai", public_id, secret_key,
                         policy=RetryPolicy(timeout_s=30, max_attempts=5, backoff_s=1,
                                            breaker_threshold=10, breaker_reset_s=60))
    Calls that need no account (datasets, rounds) work without keys. `sleep` and `clock`
    (seconds, monotonic) are what the retries wait with and the breaker times with.
    """

    def __init__(self, api_url: str, public_id: str | None = None,
                 secret_key: str | None = None, *, policy: RetryPolicy,
                 keys_hint: str = "the public id and secret key of a Numerai API key",
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        if not re.match(r"https://|http://(127\.0\.0\.1|localhost)[:/]", str(api_url)):
            # the API key goes in a header: never in clear text beyond this machine
            raise NumerlabError(f"tournament.api_url must be an http(s) URL (http only for "
                                f"localhost), got {api_url!r}")
        self.api_url = str(api_url)
        self.public_id = public_id or None
        self.secret_key = secret_key or None
        self.policy = policy
        self.keys_hint = keys_hint
        self.transport = Transport(policy, session, sleep, clock, self._redact)
        self._api: Any = None
        self._models: dict[str, str] | None = None

    def __repr__(self) -> str:  # never the keys
        keys = "with keys" if self.public_id and self.secret_key else "without keys"
        return f"TournamentClient({self.api_url!r}, {keys})"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                    **kwargs: Any) -> TournamentClient:
        """Client of a `tournament` config. Keys come from `keys_file` when it is set (a
        dotenv-style file outside the repository, holding the two variables named by
        `public_id_env` / `secret_key_env`), else from those environment variables.
        Missing keys are only an error when a call needs them. `cfg` may be the composed
        `tournament` group itself (resolved here)."""
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        settings.required(GROUP, cfg, ("api_url",))
        policy = retry_policy(cfg)
        public_id, secret_key, hint = KeySource.from_config(cfg).keys(environ)
        return cls(str(cfg["api_url"]), public_id, secret_key, policy=policy, keys_hint=hint,
                   **kwargs)

    # -- plumbing ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in (self.secret_key, self.public_id):
            if secret:
                text = text.replace(secret, "***")
        return text

    @property
    def api(self) -> Any:
        """The numerapi.NumerAPI (routed through this client) the calls go over."""
        if self._api is None:
            self._api = _numerapi_class()(self)
        return self._api

    def _authorization(self, operation: str) -> str:
        missing = _missing_keys_message(self.public_id, self.secret_key, self.keys_hint)
        if missing:
            raise NumerlabError(f"{missing} (needed for {operation})")
        return f"Token {self.public_id}${self.secret_key}"

    def _keys_rejected(self, operation: str, detail: str) -> NumerlabError:
        return NumerlabError(
            f"Numerai rejected the API keys for {operation} ({self._redact(detail)[:160]}): "
            f"check {self.keys_hint}; the key needs the scope for this action")

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, *,
                authorization: bool = False) -> dict:
        """POST one GraphQL document to api_url; the parsed answer ({"data": ...}), or a
        one-line NumerlabError for any HTTP, JSON or GraphQL error."""
        operation = operation_name(query)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authorization:
            headers["Authorization"] = self._authorization(operation)
        mutation = query.lstrip().startswith("mutation")
        response = self.transport.request(
            "POST", self.api_url, what=f"Numerai API {operation}", idempotent=not mutation,
            json={"query": query, "variables": dict(variables or {})}, headers=headers)
        with response:
            status = response.status_code
            try:
                answer = response.json()
            except ValueError:
                answer = None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        detail = _error_text(errors) or f"HTTP {status}"
        if status in (401, 403):
            raise self._keys_rejected(operation, detail)
        if status >= 400:
            raise NumeraiApiError(f"Numerai API {operation} refused the request (HTTP "
                                  f"{status}): {self._redact(detail)[:200]}")
        if not isinstance(answer, dict):
            raise NumeraiApiError(f"Numerai API {operation}: the answer is not JSON (HTTP "
                                  f"{status}); is tournament.api_url {self.api_url} right?")
        if errors:
            if authorization and _AUTH_WORDS.search(detail):
                raise self._keys_rejected(operation, detail)
            raise NumeraiApiError(f"Numerai API {operation}: {self._redact(detail)[:200]}")
        if not isinstance(answer.get("data"), dict):
            raise NumeraiApiError(f"Numerai API {operation}: the answer has no data")
        return answer

    @contextlib.contextmanager
    def _numerapi(self, what: str) -> Iterator[None]:
        """numerapi digs into answers with [] and converts values; turn what it raises
        on an answer of an unexpected shape into one line."""
        try:
            yield
        except NumerlabError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise NumeraiApiError(f"Numerai API {what}: unexpected answer "
                                  f"({type(exc).__name__}: "
                                  f"{self._redact(message_line(exc))[:120]})") from None

    # -- datasets ---------------------------------------------------------------------

    def list_datasets(self, version: str | None = None) -> list[str]:
        """Dataset names Numerai lists (e.g. "v5.2/train.parquet"); only those of
        `version` ("v5.2") if given."""
        with self._numerapi("listDatasets"):
            names = [str(n) for n in (self.api.list_datasets() or [])]
        if version is None:
            return names
        prefix = f"{version.strip('/')}/"
        chosen = [n for n in names if n.startswith(prefix)]
        if not chosen:
            versions = sorted({n.split("/")[0] for n in names if "/" in n}, key=_version_key)
            raise NumerlabError(f"Numerai lists no files for data version {version!r} "
                                f"(versions: {', '.join(versions) or 'none'})")
        return chosen

    def latest_version(self) -> str:
        """The newest v5.x data version among the listed datasets, e.g. "v5.2"."""
        names = self.list_datasets()
        versions = {n.split("/")[0] for n in names if re.match(r"v\d+\.\d+/", n)}
        current = [v for v in versions if _version_key(v)[0] == DATA_MAJOR_VERSION]
        if not current:
            raise NumerlabError(f"Numerai lists no v{DATA_MAJOR_VERSION}.x data version "
                                f"(versions: {', '.join(sorted(versions)) or 'none'})")
        return max(current, key=_version_key)

    def dataset_files(self, version: str, files: Sequence[str] | None = None) -> list[str]:
        """Full dataset names to sync: `files` (base names or full names, checked against
        the list) or the default set of the version."""
        listed = self.list_datasets(version)
        prefix = f"{version.strip('/')}/"
        if files is not None:
            wanted = [f if "/" in f else prefix + f for f in files]
            unknown = [w for w in wanted if w not in listed]
            if unknown:
                names = ", ".join(n.removeprefix(prefix) for n in listed)
                raise NumerlabError(f"Numerai lists no dataset {unknown[0]!r} (files of "
                                    f"{version}: {names})")
            return wanted
        for required in REQUIRED_FILES:
            if prefix + required not in listed:
                raise NumerlabError(f"Numerai lists no {prefix + required}: {version} is not "
                                    f"a complete v5 layout")
        # by default: the v5 reader's required files, the meta model, every benchmark file
        base = [prefix + f for f in (*REQUIRED_FILES, META_MODEL_FILE)
                if prefix + f in listed]
        return base + sorted(n for n in listed if n.endswith(BENCHMARK_SUFFIX))

    def dataset_url(self, name: str) -> str:
        """Presigned download URL of a dataset (valid for a while)."""
        answer = self.graphql(DATASET_URL_QUERY, {"filename": name, "round": None,
                                                  "tournament": CLASSIC_TOURNAMENT})
        url = answer["data"].get("dataset")
        if not isinstance(url, str) or not url:
            raise NumeraiApiError(f"Numerai API dataset: no download URL for {name}")
        return url

    def sync_dataset(self, version: str, data_dir: str | Path,
                     files: Sequence[str] | None = None, progress: bool = True) -> list[Path]:
        """Bring the files of data `version` into `data_dir` (flat: "v5.2/train.parquet" ->
        data_dir/train.parquet) and return their paths.

        A file is fetched only if it is missing or changed: the manifest in data_dir
        records the size, ETag and Last-Modified of the object each file came from, and the
        download's first response names the current object; an unchanged file is left as
        is (its response is closed before the body). A file already there without a record
        (e.g. from an earlier numerapi download) is kept when its size matches. Bytes go to
        `<name>.temp`; after an interruption the next attempt (or run) resumes it with a
        Range request (If-Range: a changed object restarts it), and the file is renamed into
        place only when complete and verified to open. Other files are never touched."""
        data_dir = Path(data_dir).expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        names = self.dataset_files(version, files)
        manifest = Manifest(data_dir)
        paths = []
        with _progress_bar(progress) as bar:
            for name in names:
                dest = data_dir / Path(name).name
                fetched = self._sync_file(name, dest, manifest, bar)
                log.info("%s: %s", dest, "downloaded" if fetched else "up to date")
                paths.append(dest)
        return paths

    def _sync_file(self, name: str, dest: Path, manifest: Manifest, bar: Any) -> bool:
        """Make `dest` hold the current bytes of dataset `name`; True if it downloaded."""
        url = self.dataset_url(name)
        temp = dest.with_name(dest.name + TEMP_SUFFIX)
        task = bar.add_task(dest.name, total=None)

        def attempt() -> RemoteFile | None:
            partial = manifest.partial.get(dest.name)
            have = temp.stat().st_size if partial and temp.is_file() else 0
            headers = {"Accept-Encoding": "identity"}  # byte offsets must be the file's
            validator = partial and (partial.get("etag") or partial.get("last_modified"))
            if have and validator:
                headers.update({"Range": f"bytes={have}-", "If-Range": validator})
            response = self.transport.send_once("GET", url, headers=headers, stream=True)
            with response:
                return self._receive(name, dest, temp, response, have, manifest, bar, task)

        remote = self.transport.call(attempt, f"download of {name}")
        if remote is None:
            bar.update(task, total=dest.stat().st_size, completed=dest.stat().st_size)
            return False
        try:
            verify_download(temp, name)
        except NumerlabError:
            temp.unlink(missing_ok=True)
            manifest.partial.pop(dest.name, None)
            manifest.save()
            raise
        os.replace(temp, dest)
        manifest.files[dest.name] = remote.record(name)
        manifest.partial.pop(dest.name, None)
        manifest.save()
        return True

    def _receive(self, name: str, dest: Path, temp: Path, response: requests.Response,
                 have: int, manifest: Manifest, bar: Any, task: Any) -> RemoteFile | None:
        """Handle one download response: None if `dest` is current, else append/write the
        body to `temp` and return the object's RemoteFile (raises if cut short)."""
        status = response.status_code
        if status >= 500:
            raise _ServerError(status, _where(response.url))
        if status == 416:  # our .temp is not a prefix of the object: start over
            temp.unlink(missing_ok=True)
            manifest.partial.pop(dest.name, None)
            raise _IncompleteBody(f"{name}: resume refused (HTTP 416), restarting")
        if status not in (200, 206):
            raise NumeraiApiError(f"download of {name} refused: HTTP {status} from "
                                  f"{_where(response.url)}")
        remote = _remote_file(response)
        if status == 206 and _range_start(response) != have:
            # Not the range we asked for: take nothing from it, start over next attempt.
            temp.unlink(missing_ok=True)
            manifest.partial.pop(dest.name, None)
            raise _IncompleteBody(f"{name}: server resumed at the wrong offset")
        if status == 200:
            have = 0
            if dest.is_file() and self._is_current(dest, name, remote, manifest):
                return None
        manifest.partial[dest.name] = remote.record(name)
        manifest.save()
        bar.update(task, total=remote.size, completed=have)
        with open(temp, "ab" if have else "wb") as out:
            for chunk in _body_chunks(response, self.policy.timeout_s):
                out.write(chunk)
                bar.advance(task, len(chunk))
        got = temp.stat().st_size
        if remote.size is not None and got != remote.size:
            raise _IncompleteBody(f"{name}: got {got} of {remote.size} bytes")
        return remote

    @staticmethod
    def _is_current(dest: Path, name: str, remote: RemoteFile, manifest: Manifest) -> bool:
        local_size = dest.stat().st_size
        record = manifest.files.get(dest.name)
        if record is not None:
            return (record.get("source") == name and local_size == record.get("size")
                    and remote.same_as(record))
        if remote.size is not None and local_size == remote.size:
            manifest.files[dest.name] = remote.record(name)  # adopt a file put there before
            manifest.save()
            return True
        # A file numerlab did not download is the user's: never replaced.
        raise NumerlabError(f"{dest} was not downloaded by numerlab and differs from Numerai's "
                            f"{name}: move it away (or choose another data.dir) to download")

    # -- rounds -----------------------------------------------------------------------

    def round_status(self, now: datetime | None = None) -> RoundStatus:
        """The current round at `now` (default: the clock): number, open or not, close
        time and time left, next opening, payout factor and multipliers — from the API,
        the weekday schedule only where the API is silent."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        current = self._current_round()
        upcoming = self._upcoming_opens()
        return round_status_from(moment, current, upcoming)

    def _current_round(self) -> dict | None:
        try:
            with self._numerapi("rounds"):
                rounds = self.api.list_rounds(number=0)
        except NumeraiApiError as exc:
            # Between rounds Numerai answers "number: 0" with an error instead of a round.
            log.info("no current round from Numerai (%s)", exc)
            return None
        return rounds[0] if rounds and isinstance(rounds[0], dict) else None

    def _upcoming_opens(self) -> list[datetime]:
        try:
            with self._numerapi("rounds"):
                rounds = self.api.list_rounds(status="upcoming", limit=3)
        except NumeraiApiError as exc:
            log.info("no upcoming rounds from Numerai (%s)", exc)
            return []
        opens = [_as_datetime(r.get("openTime")) for r in rounds or [] if isinstance(r, dict)]
        return [o for o in opens if o is not None]

    # -- account ----------------------------------------------------------------------

    def models(self) -> dict[str, str]:
        """Model name -> model id of the account's Classic models."""
        if self._models is None:
            with self._numerapi("account"):
                self._models = {str(k): str(v) for k, v in self.api.get_models().items()}
        return dict(self._models)

    def model_id(self, model_name: str) -> str:
        """Id of the account's model `model_name`."""
        if not model_name:
            raise NumerlabError("tournament.model_name is not set (your models: "
                                f"{', '.join(sorted(self.models())) or 'none'})")
        models = self.models()
        if model_name not in models:
            raise NumerlabError(f"this Numerai account has no model {model_name!r} (its "
                                f"models: {', '.join(sorted(models)) or 'none'})")
        return models[model_name]

    def stake(self, model_name: str) -> float:
        """NMR staked on `model_name` now (0.0 without a stake)."""
        try:
            with self._numerapi("v3UserProfile"):
                value = self.api.stake_get(model_name)
        except NumeraiApiError as exc:
            raise NumeraiApiError(f"cannot read the stake of model {model_name!r}: "
                                  f"{exc}") from None
        return float(value) if value is not None else 0.0

    def wallet_balance(self) -> float | None:
        """Available NMR of the account's wallet, or None if Numerai does not say."""
        with self._numerapi("account"):
            account = self.api.get_account()
        return _as_float((account or {}).get("availableNmr"))

    def change_stake(self, model_name: str, delta: float) -> StakeChange:
        """Ask Numerai to increase (delta > 0) or decrease (delta < 0) the stake of
        `model_name` by |delta| NMR (numerapi's stake_increase / stake_decrease, the
        v2ChangeStake mutation; decreases are released after Numerai's delay)."""
        amount = _as_float(delta)
        if amount is None or not math.isfinite(amount) or amount == 0:
            raise NumerlabError(f"stake change for model {model_name!r} must be a non-zero "
                                f"number of NMR, got {delta!r}")
        model = self.model_id(model_name)
        nmr = _nmr_string(abs(amount))
        action = "increase" if amount > 0 else "decrease"
        with self._numerapi("v2ChangeStake"):
            change = getattr(self.api, f"stake_{action}")(nmr, model) or {}
            return StakeChange(model_name=model_name, action=str(change.get("type") or action),
                               amount=_as_float(change.get("requestedAmount")) or float(nmr),
                               status=change.get("status"),
                               due_date=_as_datetime(change.get("dueDate")))

    # -- uploads ----------------------------------------------------------------------

    def upload_predictions(self, csv_path: str | Path, model_name: str) -> str:
        """Upload a submission CSV for `model_name`; the submission id. Refuses when the
        round is closed. (Validate it first with numerlab.submission.validate_submission.)"""
        path = _existing_file(csv_path, "submission")
        model = self.model_id(model_name)
        self.round_status().require_open(f"not uploading {path}")
        auth = self._upload_auth(SUBMISSION_AUTH_QUERY, "submission_upload_auth",
                                 {"filename": path.name, "tournament": CLASSIC_TOURNAMENT,
                                  "modelId": model})
        self._put(auth["url"], path, "submission")
        created = self.graphql(CREATE_SUBMISSION_MUTATION, {
            "filename": auth["filename"], "tournament": CLASSIC_TOURNAMENT, "modelId": model,
            "triggerId": os.environ.get("TRIGGER_ID")}, authorization=True)
        return _created_id(created, "create_submission")

    def upload_model(self, pickle_path: str | Path, model_name: str) -> str:
        """Upload a cloudpickled predict function for `model_name` (Numerai runs it each
        round); the model upload id."""
        path = _existing_file(pickle_path, "model pickle")
        if path.suffix != ".pkl":
            raise NumerlabError(f"Numerai takes a model upload as a .pkl file, got {path}")
        model = self.model_id(model_name)
        auth = self._upload_auth(MODEL_UPLOAD_AUTH_QUERY, "computePickleUploadAuth",
                                 {"filename": path.name, "modelId": model})
        self._put(auth["url"], path, "model pickle")
        created = self.graphql(CREATE_MODEL_UPLOAD_MUTATION, {
            "filename": auth["filename"], "tournament": CLASSIC_TOURNAMENT, "modelId": model},
            authorization=True)
        return _created_id(created, "createComputePickleUpload")

    def _upload_auth(self, query: str, operation: str, variables: dict) -> dict:
        auth = self.graphql(query, variables, authorization=True)["data"].get(operation)
        if not isinstance(auth, dict) or not auth.get("url") or not auth.get("filename"):
            raise NumeraiApiError(f"Numerai API {operation}: no upload URL in the answer")
        return auth

    def _put(self, url: str, path: Path, what: str) -> None:
        """PUT a file to a presigned URL (idempotent: retried); raise unless 2xx."""
        def put() -> int:
            with open(path, "rb") as body:
                response = self.transport.send_once("PUT", url, data=body)
            with response:
                if response.status_code >= 500:
                    raise _ServerError(response.status_code, _where(url))
                return response.status_code

        status = self.transport.call(put, f"upload of {path.name}")
        if not 200 <= status < 300:
            raise NumeraiApiError(f"upload of {what} {path} to Numerai's storage refused: "
                                  f"HTTP {status} from {_where(url)}")


def _created_id(answer: dict, operation: str) -> str:
    created = answer["data"].get(operation)
    if not isinstance(created, dict) or not created.get("id"):
        raise NumeraiApiError(f"Numerai API {operation}: no id in the answer")
    return str(created["id"])


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise NumerlabError(f"{what} file {path} does not exist")
    return path


def _nmr_string(amount: float) -> str:
    """NMR amount as the API takes it: a decimal string, at most 8 decimals, no exponent."""
    text = f"{amount:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def _version_key(version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", version)
    return tuple(int(n) for n in numbers) or (-1,)


def _error_text(errors: Any) -> str:
    """The messages of a GraphQL "errors" value (list of {"message"} or {"detail"})."""
    if isinstance(errors, list):
        messages = [str(e.get("message")) for e in errors if isinstance(e, dict)
                    and e.get("message")]
        return "; ".join(messages)
    if isinstance(errors, dict):
        return str(errors.get("detail") or errors.get("message") or "")
    return str(errors or "")
