"""`TournamentClient`: every call numerlab makes to Numerai (datasets, rounds, models,
stakes, uploads), over numerapi's GraphQL sent through this package's transport."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numerlab import settings
from numerlab.data.layout import (
    BENCHMARK_SUFFIX,
    META_MODEL_FILE,
    REQUIRED_FILES,
)
from numerlab.errors import NumerlabError, message_line
from numerlab.tournament.config import (
    GROUP,
    KeySource,
    RetryPolicy,
    _missing_keys_message,
    retry_policy,
)
from numerlab.tournament.downloads import (
    TEMP_SUFFIX,
    Manifest,
    RemoteFile,
    _body_chunks,
    _progress_bar,
    _range_start,
    _remote_file,
    verify_download,
)
from numerlab.tournament.rounds import (
    RoundStatus,
    _as_datetime,
    _as_float,
    round_status_from,
    utc,
)
from numerlab.tournament.transport import (
    DEADLINE_PASSED,
    NO_OPEN_ROUND,
    SESSION_INVALID,
    NumeraiApiError,
    OutcomeUnknown,
    Transport,
    _IncompleteBody,
    _ServerError,
    _where,
    operation_name,
)

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

CLASSIC_TOURNAMENT = 8  # numerapi's NumerAPI.tournament_id: Numerai Classic
DATA_MAJOR_VERSION = 5  # latest_version() picks the newest v5.x

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
V2_CHANGE_STAKE_MUTATION = """
mutation ($value: String!, $type: String!, $tournamentNumber: Int!, $modelId: String) {
  v2ChangeStake(value: $value, type: $type, modelId: $modelId,
                tournamentNumber: $tournamentNumber) {
    dueDate
    requestedAmount
    status
    type
  }
}"""
# Read back after a lost answer. The pending v2 stake request as NumerBay reads it from
# Numerai (councilofelders/numerbay backend/app/app/api/dependencies/numerai.py): a decrease
# waits there for weeks, so the stake alone would not show it landed.
PENDING_STAKE_QUERY = """
query {
  account {
    models {
      id
      v2Stake {
        pendingV2ChangeStakeRequest {
          requestedAmount
          status
          type
        }
      }
    }
  }
}"""
# The key's scopes, as numerapi's get_account asks for them (scope names there:
# upload_submission, stake, read_submission_info, read_user_info).
API_TOKENS_QUERY = """
query {
  account {
    apiTokens {
      name
      public_id
      scopes
    }
  }
}"""
# The scope an operation needs (Numerai answers a key without it with an error whose wording
# it does not publish: the client reads the key's scopes instead of matching words).
SCOPE_OF = {"submission_upload_auth": "upload_submission", "create_submission": "upload_submission",
            "computePickleUploadAuth": "upload_submission",
            "createComputePickleUpload": "upload_submission",
            "v2ChangeStake": "stake", "releaseStake": "stake",
            "account": "read_user_info", "submissions": "read_submission_info"}
CREATE_MODEL_UPLOAD_MUTATION = """
mutation ($filename: String!, $tournament: Int!, $modelId: String, $dataVersionId: String,
          $dockerImageId: String) {
  createComputePickleUpload(filename: $filename, tournament: $tournament, modelId: $modelId,
                            dataVersionId: $dataVersionId, dockerImageId: $dockerImageId) {
    id
  }
}"""

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
class ReadBack:
    """What reading Numerai's state back showed after a mutation's answer was lost."""

    landed: bool | None  # True: it was applied; False: it was not; None: cannot tell
    seen: str  # what was read, in words (for the log and the one-line error)
    data: Any = None  # what the caller needs of an applied mutation (e.g. its id)


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
        self._reading_scopes = False

    @property
    def has_keys(self) -> bool:
        """Whether both API keys are set (the calls that need an account can be made)."""
        return bool(self.public_id and self.secret_key)

    def __repr__(self) -> str:  # never the keys
        keys = "with keys" if self.has_keys else "without keys"
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
            f"check {self.keys_hint}; the public id is the API key's id from "
            f"numer.ai/account (not your username), the secret key its other half")

    def _refusal(self, operation: str, detail: str, authorization: bool) -> NumerlabError:
        """One line for a GraphQL error: Numerai's known sentences mapped to what to do,
        a key without the operation's scope found by reading its scopes, else the words."""
        text = self._redact(detail)[:200]
        if SESSION_INVALID in detail:
            return self._keys_rejected(operation, detail)
        if DEADLINE_PASSED in detail or (NO_OPEN_ROUND in detail and operation != "rounds"):
            return NumeraiApiError(f"Numerai API {operation} refused: the round is closed "
                                   f"({text}); run it again once the next round opens "
                                   f"(task=status shows when)")
        scope = SCOPE_OF.get(operation) if authorization else None
        if scope is not None and scope not in (self._key_scopes() or {scope}):
            return NumerlabError(f"Numerai API {operation} refused ({text}): the API key in "
                                 f"{self.keys_hint.split(' (')[0]} lacks the '{scope}' scope; "
                                 f"add it (or create a key with it) at numer.ai/account")
        return NumeraiApiError(f"Numerai API {operation}: {text}")

    def _key_scopes(self) -> set[str] | None:
        """The scopes of this client's API key (None when Numerai does not say, e.g. the
        key may not read the account either)."""
        if self._reading_scopes:
            return None
        self._reading_scopes = True
        try:
            answer = self.graphql(API_TOKENS_QUERY, authorization=True)
        except NumerlabError:
            return None
        finally:
            self._reading_scopes = False
        account = answer["data"].get("account") or {}
        for token in account.get("apiTokens") or []:
            if isinstance(token, dict) and token.get("public_id") == self.public_id:
                return {str(s) for s in token.get("scopes") or []}
        return None

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
            raise self._refusal(operation, detail, authorization)
        if not isinstance(answer.get("data"), dict):
            raise NumeraiApiError(f"Numerai API {operation}: the answer has no data")
        return answer

    def mutate(self, query: str, variables: Mapping[str, Any] | None = None, *,
               read_back: Callable[[], ReadBack] | None = None,
               check: str = "numer.ai") -> Any:
        """Send a GraphQL mutation (authorized) so that it is applied at most once; the
        value of its field in the answer.

        A mutation is never resent blindly. When its answer is lost after sending (502/504,
        a read timeout, a dropped connection: `OutcomeUnknown`), `read_back()` looks at
        Numerai's state: applied -> its `data` is returned; not applied -> sent again
        (at most tournament.max_attempts sends in all); cannot tell (or no `read_back`) ->
        OutcomeUnknown, one line saying it may have been applied and to check `check`."""
        operation = operation_name(query)
        sends = self.policy.max_attempts
        for send in range(1, sends + 1):
            try:
                return self.graphql(query, variables, authorization=True)["data"].get(operation)
            except OutcomeUnknown as exc:
                lost = exc
            self.transport._sleep(self.policy.backoff_s)  # let a late apply land first
            seen = self._read(read_back)
            if seen.landed:
                log.warning("Numerai API %s: the answer was lost (%s) but reading back shows "
                            "it was applied (%s)", operation, lost.reason, seen.seen)
                return seen.data
            if seen.landed is None:
                raise OutcomeUnknown(
                    f"Numerai API {operation}: {lost.reason} after it was sent; it may have "
                    f"been applied ({seen.seen}): check {check} before sending it again",
                    reason=lost.reason) from None
            if send < sends:
                log.warning("Numerai API %s: the answer was lost (%s) and reading back shows "
                            "it was not applied (%s); sending it again", operation,
                            lost.reason, seen.seen)
                self.transport._sleep(self.transport.backoff(send))
        raise NumeraiApiError(f"Numerai API {operation}: not applied ({seen.seen}); each of "
                              f"{sends} sends lost its answer (last: {lost.reason}, "
                              f"tournament.max_attempts)")

    @staticmethod
    def _read(read_back: Callable[[], ReadBack] | None) -> ReadBack:
        if read_back is None:
            return ReadBack(None, "nothing to read it back from")
        try:
            return read_back()
        except NumerlabError as exc:
            return ReadBack(None, f"reading it back failed: {message_line(exc)[:160]}")

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
        moment = utc(now) if now is not None else datetime.now(UTC)
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
        before = self._stake_state(model_name, model)
        read_back = self._stake_read_back(model_name, model, before, action, Decimal(nmr))
        change = self.mutate(V2_CHANGE_STAKE_MUTATION, {
            "value": nmr, "type": action, "modelId": model,
            "tournamentNumber": CLASSIC_TOURNAMENT}, read_back=read_back,
            check=f"the stake of model {model_name!r} on numer.ai")
        change = change if isinstance(change, dict) else {}
        return StakeChange(model_name=model_name, action=str(change.get("type") or action),
                           amount=_as_float(change.get("requestedAmount")) or float(nmr),
                           status=change.get("status"),
                           due_date=_as_datetime(change.get("dueDate")))

    def _stake_state(self, model_name: str, model_id: str) -> tuple[Decimal, tuple | None]:
        """(stake, pending change request as (type, amount, status) or None) of a model."""
        with self._numerapi("v3UserProfile"):
            stake = Decimal(str(self.api.stake_get(model_name) or 0))
        models = self.graphql(PENDING_STAKE_QUERY, authorization=True)["data"].get("account")
        pending = None
        for item in (models or {}).get("models") or []:
            if isinstance(item, dict) and item.get("id") == model_id:
                request = (item.get("v2Stake") or {}).get("pendingV2ChangeStakeRequest")
                if isinstance(request, dict):
                    pending = (request.get("type"), _decimal(request.get("requestedAmount")),
                               request.get("status"))
        return stake, pending

    def _stake_read_back(self, model_name: str, model_id: str, before: tuple,
                         action: str, amount: Decimal) -> Callable[[], ReadBack]:
        """Applied when the stake moved by the change or a pending request of it appeared;
        not applied when stake and pending request are as they were before sending."""
        def read() -> ReadBack:
            after = self._stake_state(model_name, model_id)
            seen = (f"stake {before[0]} -> {after[0]} NMR, pending request "
                    f"{before[1]} -> {after[1]}")
            moved = after[0] - before[0] == (amount if action == "increase" else -amount)
            requested = after[1] != before[1] and after[1] is not None and (
                after[1][0], after[1][1]) == (action, amount)
            if moved or requested:
                return ReadBack(True, seen, {"type": action, "requestedAmount": str(amount),
                                             "status": after[1][2] if requested else None})
            return ReadBack(False if after == before else None, seen)
        return read

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
        created = self.mutate(CREATE_SUBMISSION_MUTATION, {
            "filename": auth["filename"], "tournament": CLASSIC_TOURNAMENT, "modelId": model,
            "triggerId": os.environ.get("TRIGGER_ID")},
            read_back=self._submission_read_back(model, auth["filename"]),
            check=f"the latest submission of model {model_name!r} on numer.ai")
        return _created_id({"data": {"create_submission": created}}, "create_submission")

    def submissions(self, model_name: str) -> list[dict]:
        """The submissions of `model_name` as Numerai lists them (numerapi
        `submission_ids`): dicts with `id`, `filename` and `insertedAt` (a datetime)."""
        return self._listed_submissions(self.model_id(model_name))

    def _listed_submissions(self, model_id: str) -> list[dict]:
        with self._numerapi("submissions"):
            listed = self.api.submission_ids(model_id) or []
        return [s for s in listed if isinstance(s, dict)]

    def _submission_read_back(self, model_id: str, filename: str) -> Callable[[], ReadBack]:
        """Applied when the model's submissions (numerapi `submission_ids`) list the
        uploaded file; not applied when they do not."""
        def read() -> ReadBack:
            listed = self._listed_submissions(model_id)
            found = [s for s in listed if s.get("filename") == filename]
            if found:
                return ReadBack(True, f"submission {found[-1].get('id')} of {filename} is "
                                      f"listed", {"id": found[-1].get("id")})
            return ReadBack(False, f"none of the model's {len(listed)} submissions is "
                                   f"{filename}")
        return read

    def upload_model(self, pickle_path: str | Path, model_name: str,
                     data_version_id: str | None = None,
                     docker_image_id: str | None = None) -> str:
        """Upload a cloudpickled predict function for `model_name` (Numerai runs it each
        round) to run on data version `data_version_id` in image `docker_image_id` (ids
        from `tournament.model_uploads`; None: Numerai's defaults); the model upload id."""
        path = _existing_file(pickle_path, "model pickle")
        if path.suffix != ".pkl":
            raise NumerlabError(f"Numerai takes a model upload as a .pkl file, got {path}")
        model = self.model_id(model_name)
        auth = self._upload_auth(MODEL_UPLOAD_AUTH_QUERY, "computePickleUploadAuth",
                                 {"filename": path.name, "modelId": model})
        self._put(auth["url"], path, "model pickle")
        created = self.graphql(CREATE_MODEL_UPLOAD_MUTATION, {
            "filename": auth["filename"], "tournament": CLASSIC_TOURNAMENT, "modelId": model,
            "dataVersionId": data_version_id, "dockerImageId": docker_image_id},
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


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except (InvalidOperation, ValueError):
        return None


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
