"""HTTP to Numerai: timeouts, retries with backoff and jitter on what is safe to retry, a
circuit breaker, and the one-line errors a failed call ends in."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from numerlab.errors import NumerlabError, message_line
from numerlab.tournament.config import RetryPolicy

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 60.0  # cap of one exponential backoff wait (before jitter)

# Numerai's own sentences (GraphQL "errors" messages), matched exactly, never by loose words:
# - wrong keys (numerapi issue #7: a username given as the public id, or the keys swapped);
SESSION_INVALID = "Your session is invalid or has expired."
# - a submission after the round's deadline (numerai-cli numerai/cli/util/debug.py knows
#   this answer of Numerai's to a submission run past the close);
DEADLINE_PASSED = "Can't update submission after deadline"
# - `rounds(number: 0)` between rounds (numerapi base_api.check_round_open's comment).
NO_OPEN_ROUND = "Current round not open for submissions"


# --- errors -----------------------------------------------------------------------------

class NumeraiApiError(NumerlabError):
    """Numerai answered, with an error about the request (not a transport failure)."""


class CircuitOpenError(NumerlabError):
    """The circuit breaker is open: Numerai failed too often in a row; nothing was sent."""


class OutcomeUnknown(NumerlabError):
    """A mutation was sent and its answer lost (a 502/504 or other 5xx but 503, a read
    timeout, a connection dropped after sending): it may or may not have been applied.
    Never resent blindly: `TournamentClient.mutate` reads the state back first."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


class _ServerError(Exception):
    """A 5xx answer: transient."""

    def __init__(self, status: int, where: str):
        super().__init__(f"HTTP {status} from {where}")
        self.status = status


class _IncompleteBody(Exception):
    """A download ended before its announced size: transient, resumed with Range."""


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
            if not idempotent and not _is_retryable(exc, idempotent=False):
                reason = self._describe(exc)
                raise OutcomeUnknown(f"{what}: {reason} after the request was sent; it may "
                                     f"have been applied: check numer.ai before sending it "
                                     f"again", reason=reason) from None
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
        if not idempotent:  # only failures that prove it never reached Numerai's app
            tries += "; not applied"
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
    if "Connection aborted" in text or "RemoteDisconnected" in text:  # after sending
        return f"connection to {host} closed without an answer"
    return f"cannot connect to {host} ({errno.group() if errno else text[:120]})"


def _is_transport_failure(exc: BaseException) -> bool:
    """Failures that say the server or the network is in trouble (breaker counts them)."""
    import requests

    return isinstance(exc, (_ServerError, _IncompleteBody, requests.Timeout,
                            requests.ConnectionError, requests.exceptions.ChunkedEncodingError))


def _is_retryable(exc: BaseException, idempotent: bool) -> bool:
    """Transient failures; for a mutation only those that prove it was not applied: a 503
    (unavailable: not taken) and a connection that never opened. A 502/504 comes from a
    gateway that may well have forwarded the request, and a read timeout or a connection
    dropped after sending says nothing about the app: those outcomes are unknown."""
    import requests

    if not _is_transport_failure(exc):
        return False
    if idempotent:
        return True
    if isinstance(exc, _ServerError):
        return exc.status == 503
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
