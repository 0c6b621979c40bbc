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
  mutation (submission, stake change) is never resent blindly: only a 503 or a connection
  that never opened proves it was not applied; after a 502/504, a read timeout or a dropped
  connection its outcome is unknown (`OutcomeUnknown`), and `TournamentClient.mutate` reads
  Numerai's state back (the stake, the model's submissions) to send it again only when it
  did not land, else stops with one line saying it may have been applied. After
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
- Staking. `tournament.staking=abs` (Atomic Blockchain Staking, "v3"): `stakes.AbsStakes`
  reads positions, claims and the contract and asks for a signed authorization; numerlab
  holds no private key and signs nothing. `v2`: the legacy `change_stake`.

numerapi (and requests, tenacity) are imported inside the functions that need them.
"""


from numerlab.tournament.client import ReadBack, StakeChange, TournamentClient
from numerlab.tournament.config import KeySource, RetryPolicy, check_config_keys
from numerlab.tournament.rounds import (
    TIME_FORMAT,
    PayoutScore,
    RoundStatus,
    duration,
    schedule_at,
    scheduled_window,
)
from numerlab.tournament.stakes import (
    ABS,
    V2,
    AbsStakes,
    Book,
    ChainRound,
    Claim,
    Position,
    StakeContract,
    nmr_text,
    staking_system,
    wallet_address,
)
from numerlab.tournament.transport import CircuitOpenError, NumeraiApiError, OutcomeUnknown

__all__ = [
    "ABS",
    "TIME_FORMAT",
    "V2",
    "AbsStakes",
    "Book",
    "ChainRound",
    "Claim",
    "Position",
    "StakeContract",
    "CircuitOpenError",
    "KeySource",
    "NumeraiApiError",
    "OutcomeUnknown",
    "PayoutScore",
    "ReadBack",
    "RetryPolicy",
    "RoundStatus",
    "StakeChange",
    "TournamentClient",
    "check_config_keys",
    "duration",
    "nmr_text",
    "schedule_at",
    "scheduled_window",
    "staking_system",
    "wallet_address",
]
