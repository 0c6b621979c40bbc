"""A fake Numerai for tests: GraphQL API, presigned downloads and upload URLs on 127.0.0.1.

It answers the GraphQL operations numerapi 3.1.x (and numerlab.tournament) send, by the
first field of the document (`listDatasets`, `dataset`, `rounds`, `account`,
`v3UserProfile`, `submission_upload_auth`, `create_submission`, `submissions`,
`computePickleUploadAuth`, `createComputePickleUpload`, `computePickleDockerImages`,
`computePickleDataVersions`, `v2ChangeStake`, `releaseStake`; model uploads' images, data
versions and validation: tests/fakes/uploads.py, the fake's `pickles`; Atomic Blockchain
Staking's v3 fields in fakes/abs.py, which refuses the v2 mutations while
`fake.abs.migrated`; live scores, `submissionScores`, in fakes/scores.py: `fake.scores`),
checks the `Authorization: Token PUBLIC$SECRET` header and the key's
scopes on the operations that need an account (answering with Numerai's own sentences where
they are known), serves
dataset files with ETag / Last-Modified / Content-Length and Range (If-Range) support, and
records every PUT to an upload URL. It keeps state (rounds, models and stakes, submissions,
stake changes, model uploads) and injects faults: N failing answers then success, hanging
answers (the client's timeout must fire), rejected keys, a download cut short.

Use the `fake_numerai` fixture (in a test module: `pytest_plugins = ["fakes.numerai_server"]`,
or from tests/conftest.py):

    def test_x(fake_numerai):
        fake_numerai.add_dataset("v5.2/live.parquet", parquet_bytes({"id": ["a"]}))
        fake_numerai.add_model("my_model", stake=10)
        fake_numerai.open_round(1001)
        fake_numerai.fail_next(2, status=503)          # the next two requests answer 503
        ... TournamentClient(fake_numerai.url, PUBLIC_ID, SECRET_KEY, ...) ...
        assert fake_numerai.state.submissions[0].content == b"id,prediction\\n..."
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from fakes.uploads import PickleUploads

PUBLIC_ID = "FAKEPUBLICID0123456789"
SECRET_KEY = "FAKESECRETKEY9876543210"
KEYS_ENV = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}  # a run's env
TOURNAMENT = 8
HANG_LIMIT_S = 30.0  # a hanging answer never outlives the test: stop() releases it earlier

# Operations that need an account (numerapi sends them with authorization=True), and the
# scope of the API key each needs (scope names: numerapi get_account's docstring and tests).
AUTHORIZED = {"account", "submission_upload_auth", "create_submission",
              "computePickleUploadAuth", "createComputePickleUpload", "v2ChangeStake",
              "releaseStake", "submissions"}
SCOPES = ("upload_submission", "stake", "read_submission_info", "read_user_info")
SCOPE_NEEDED = {"submission_upload_auth": "upload_submission",
                "create_submission": "upload_submission",
                "computePickleUploadAuth": "upload_submission",
                "createComputePickleUpload": "upload_submission",
                "v2ChangeStake": "stake", "releaseStake": "stake",
                "account": "read_user_info", "submissions": "read_submission_info"}

# Numerai's answers, word for word where a source has them:
# wrong keys: a GraphQL error with HTTP 200 (numerapi issue #7 got it as the ValueError its
# raw_query raises for "errors"; an HTTP error would have come back as {} instead).
SESSION_INVALID = "Your session is invalid or has expired."
# a submission after the close (numerai-cli numerai/cli/util/debug.py recognises it).
DEADLINE_PASSED = "Can't update submission after deadline"
# `rounds(number: 0)` between rounds (numerapi base_api.check_round_open's comment).
NO_OPEN_ROUND = "Current round not open for submissions"
# Not published anywhere found (numerapi's code and issues, Numerai's docs, numerai-cli,
# NumerBay): the wording for a key without the scope, and for a model id or name the API
# does not know. These two are the fake's own words; numerlab must not match on them (it
# reads the key's scopes, and checks model names against the account's list).
MISSING_SCOPE = "fake: this API key's scopes do not include {scope}"
MODEL_NOT_FOUND = "Model not found: {model}"


# --- state ------------------------------------------------------------------------------

@dataclass
class FakeModel:
    name: str
    id: str
    stake: Decimal = Decimal(0)


@dataclass
class Upload:
    """A file PUT to an upload URL."""

    key: str
    content: bytes


@dataclass
class Submission:
    id: str
    model_id: str
    filename: str
    content: bytes
    round_number: int | None
    inserted_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class ModelUpload:
    id: str
    model_id: str
    filename: str
    content: bytes


@dataclass
class StakeChangeRecord:
    model_id: str
    type: str
    value: Decimal


@dataclass
class Request:
    """What the fake received: method, path, GraphQL operation (or None), headers (the
    Authorization header as received), variables of a GraphQL call."""

    method: str
    path: str
    operation: str | None
    headers: dict[str, str]
    variables: dict[str, Any]


@dataclass
class Dataset:
    content: bytes
    last_modified: datetime

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.content).hexdigest() + '"'


@dataclass
class Fault:
    """Answer the next `remaining` matching requests with a fault (None: every one).

    kind "status": HTTP `status` with `body`; "hang": wait (the client's timeout fires),
    then answer normally; "truncate": a download that sends `after_bytes` of the body and
    closes the connection."""

    kind: str
    remaining: int | None
    operation: str | None = None  # GraphQL operation it applies to (None: any)
    path: str | None = None  # path prefix it applies to ("/files/", "/uploads/"; None: any)
    status: int = 503
    body: bytes = b""
    content_type: str = "application/json"
    after_bytes: int = 0

    def matches(self, path: str, operation: str | None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.operation is not None and operation != self.operation:
            return False
        return self.path is None or path.startswith(self.path)


@dataclass
class FakeState:
    """Everything the fake knows; tests read and change it directly."""

    public_id: str = PUBLIC_ID
    secret_key: str = SECRET_KEY
    scopes: tuple[str, ...] = SCOPES  # of the API key
    auth_error_status: int = 200  # bad keys: 200 with a GraphQL error, or 401 / 403
    username: str = "fake_user"
    wallet_nmr: Decimal | None = Decimal(100)  # None: the API reports no balance
    datasets: dict[str, Dataset] = field(default_factory=dict)
    models: dict[str, FakeModel] = field(default_factory=dict)
    current_round: dict[str, Any] | None = None
    upcoming_rounds: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    model_uploads: list[ModelUpload] = field(default_factory=list)
    stake_changes: list[StakeChangeRecord] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)


# --- the fake ---------------------------------------------------------------------------

class FakeNumerai:
    """The server plus helpers to set it up, inject faults and inspect what it got."""

    def __init__(self, public_id: str = PUBLIC_ID, secret_key: str = SECRET_KEY):
        self.state = FakeState(public_id=public_id, secret_key=secret_key)
        self.lock = threading.RLock()
        self.release = threading.Event()  # set by stop(): hanging answers end
        self.connections: set[socket.socket] = set()  # open client connections
        self.pickles = PickleUploads(self)  # model uploads' images, data versions, status
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        # operations answered beside the _op_ methods (a resolver here wins over one), and
        # the operations that need an account: extensions (fakes/abs.py) add theirs
        self.extra_operations: dict[str, Callable[[Mapping[str, Any]], Any]] = {}
        self.authorized = set(AUTHORIZED)
        from fakes import abs as abs_staking

        self.abs = abs_staking.install(self)  # Atomic Blockchain Staking; migrated
        from fakes import scores as live_scores

        self.scores = live_scores.install(self)  # submissionScores: fake.scores.add(...)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeNumerai:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection (keep-alive ones included), so
        that clients see the server gone."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- setup -------------------------------------------------------------------------

    def add_dataset(self, name: str, content: bytes | str | Path) -> None:
        """Serve `content` (bytes, or a file's bytes) as dataset `name`, e.g.
        "v5.2/train.parquet"; registering a name again replaces it (new ETag)."""
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        with self.lock:
            previous = self.state.datasets.get(name)
            stamp = datetime.now(UTC).replace(microsecond=0)
            if previous is not None and stamp <= previous.last_modified:
                stamp = previous.last_modified + timedelta(seconds=1)
            self.state.datasets[name] = Dataset(data, stamp)

    def add_model(self, name: str, stake: float | str = 0, model_id: str | None = None
                  ) -> str:
        """An account model with a stake (NMR); its id."""
        model = FakeModel(name, model_id or str(uuid.uuid4()), Decimal(str(stake)))
        with self.lock:
            self.state.models[name] = model
        return model.id

    def open_round(self, number: int, open_time: datetime | None = None,
                   close_time: datetime | None = None,
                   payout_scores: list[dict[str, Any]] | None = None,
                   payout_factor: str | None = "1.0") -> dict[str, Any]:
        """Make `number` the current round (default: opened an hour ago, closing in an
        hour); `payout_scores` are roundScoreConfigs items (default: CORR 0.5, MMC 2)."""
        now = datetime.now(UTC)
        opens = open_time or now - timedelta(hours=1)
        closes = close_time or now + timedelta(hours=1)
        scores = payout_scores if payout_scores is not None else [
            _score_config("canon_corr", "CORR", "0.5"),
            _score_config("canon_mmc", "MMC", "2.0"),
            _score_config("canon_fnc", "FNC", "0", is_payout=False)]
        info = {"id": str(uuid.uuid4()), "tournament": TOURNAMENT, "number": number,
                "target": None, "openTime": _iso(opens), "closeTime": _iso(closes),
                "closeStakingTime": _iso(closes), "scoreTime": None,
                "resolveTime": _iso(closes + timedelta(days=30)), "resolvedGeneral": False,
                "resolvedStaking": False, "payoutFactor": payout_factor,
                "stakeThreshold": None, "dataDatestamp": None, "roundScoreConfigs": scores}
        with self.lock:
            self.state.current_round = info
        return info

    def close_round(self, number: int, closed_ago: timedelta = timedelta(hours=2)) -> None:
        """Make `number` the current round, closed `closed_ago` ago."""
        now = datetime.now(UTC)
        self.open_round(number, open_time=now - closed_ago - timedelta(hours=1),
                        close_time=now - closed_ago)

    def no_round(self) -> None:
        """Numerai names no current round (as between rounds): "number: 0" errors."""
        with self.lock:
            self.state.current_round = None

    def add_upcoming_round(self, number: int, open_time: datetime) -> None:
        with self.lock:
            self.state.upcoming_rounds.append({
                "id": str(uuid.uuid4()), "tournament": TOURNAMENT, "number": number,
                "openTime": _iso(open_time), "closeTime": None, "closeStakingTime": None,
                "roundScoreConfigs": []})

    # -- faults ------------------------------------------------------------------------

    def fail_next(self, count: int | None, status: int = 503, *, operation: str | None = None,
                  path: str | None = None, body: bytes | str | None = None,
                  content_type: str = "application/json") -> None:
        """The next `count` matching requests (None: all) answer HTTP `status` (default
        body: a GraphQL-style error), e.g. fail_next(2, 503, operation="listDatasets")."""
        if body is None:
            body = json.dumps({"errors": [{"message": f"fake failure {status}"}]})
        data = body.encode() if isinstance(body, str) else body
        self._add_fault(Fault("status", count, operation, path, status, data, content_type))

    def answer_next(self, body: bytes | str, status: int = 200, *,
                    operation: str | None = None,
                    content_type: str = "application/json") -> None:
        """The next matching request gets this raw answer (e.g. `{}` or an HTML page)."""
        data = body.encode() if isinstance(body, str) else body
        self._add_fault(Fault("status", 1, operation, None, status, data, content_type))

    def hang_next(self, count: int | None = 1, *, operation: str | None = None,
                  path: str | None = None) -> None:
        """The next `count` matching requests get no answer until the client gave up."""
        self._add_fault(Fault("hang", count, operation, path))

    def truncate_next_download(self, name: str, after_bytes: int, count: int = 1) -> None:
        """The next `count` downloads of dataset `name` send `after_bytes` bytes of the
        body (headers announce all of it) and close the connection."""
        self._add_fault(Fault("truncate", count, None, "/files/" + quote(name),
                              after_bytes=after_bytes))

    def reject_keys(self, status: int = 200) -> None:
        """From now on the account's keys differ from the client's: authorized calls fail
        (HTTP 200 with a GraphQL error, or `status` 401 / 403)."""
        with self.lock:
            self.state.secret_key = "ROTATED" + uuid.uuid4().hex
            self.state.auth_error_status = status

    def grant_scopes(self, *scopes: str) -> None:
        """From now on the API key has only these scopes (of SCOPES)."""
        with self.lock:
            self.state.scopes = tuple(scopes)

    def _add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.state.faults.append(fault)

    def take_fault(self, path: str, operation: str | None) -> Fault | None:
        with self.lock:
            for fault in self.state.faults:
                if fault.matches(path, operation):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    # -- inspection --------------------------------------------------------------------

    def operations(self) -> list[str | None]:
        """GraphQL operations received so far, in order (None for file requests)."""
        with self.lock:
            return [r.operation for r in self.state.requests]

    def requests_to(self, prefix: str) -> list[Request]:
        """Requests whose path starts with `prefix` ("/files/", "/uploads/")."""
        with self.lock:
            return [r for r in self.state.requests if r.path.startswith(prefix)]

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{quote(name)}?X-Amz-Signature=fake"

    # -- GraphQL -----------------------------------------------------------------------

    def graphql(self, operation: str, variables: Mapping[str, Any]) -> Any:
        """The `data` value of `operation`; raises GraphQLFailure for an error answer."""
        resolver = (self.extra_operations.get(operation)
                    or getattr(self, f"_op_{operation}", None)
                    or getattr(self.pickles, f"_op_{operation}", None))
        if resolver is None:
            raise GraphQLFailure(f'Cannot query field "{operation}"')
        with self.lock:
            return resolver(variables)

    def _op_listDatasets(self, variables: Mapping[str, Any]) -> list[str]:
        return sorted(self.state.datasets)

    def _op_dataset(self, variables: Mapping[str, Any]) -> str:
        name = variables.get("filename")
        if name not in self.state.datasets:
            raise GraphQLFailure(f"dataset not found: {name}")
        return self.file_url(name)

    def _op_rounds(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        if variables.get("number") == 0:
            if self.state.current_round is None:
                raise GraphQLFailure(NO_OPEN_ROUND)
            return [dict(self.state.current_round)]
        status = (variables.get("status") or "").upper()
        if status == "UPCOMING":
            return [dict(r) for r in self.state.upcoming_rounds][: variables.get("limit")]
        rounds = [self.state.current_round] if self.state.current_round else []
        return [dict(r) for r in rounds]

    def _op_account(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {"username": self.state.username, "walletAddress": None,
                "availableNmr": (None if self.state.wallet_nmr is None
                                 else str(self.state.wallet_nmr)),
                "email": "fake@example.com",
                "id": "account-id", "mfaEnabled": False, "status": "VERIFIED",
                "insertedAt": "2020-01-01T00:00:00Z",
                "apiTokens": [{"name": "numerlab", "public_id": self.state.public_id,
                               "scopes": list(self.state.scopes)}],
                "models": [{"id": m.id, "name": m.name, "tournament": TOURNAMENT,
                            "submissions": [], "v2Stake": {
                                "status": None, "txHash": None,
                                "pendingV2ChangeStakeRequest": None},
                            "computePickleUpload": self.pickles.upload_of(m.id)}
                           for m in self.state.models.values()]}

    def _op_v3UserProfile(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        name = variables.get("model_name") or variables.get("modelName")
        model = self.state.models.get(name)
        if model is None:
            raise GraphQLFailure(MODEL_NOT_FOUND.format(model=name))
        return {"id": model.id, "username": model.name, "startDate": "2020-01-01T00:00:00Z",
                "bio": None, "nmrStaked": str(model.stake), "stakeValue": str(model.stake)}

    def _upload_auth(self, variables: Mapping[str, Any]) -> dict[str, str]:
        self._model_by_id(variables.get("modelId"))
        key = f"{uuid.uuid4().hex}/{variables.get('filename')}"
        return {"filename": key, "url": f"{self.url}/uploads/{quote(key)}?X-Amz-Signature=f"}

    def _op_submission_upload_auth(self, variables: Mapping[str, Any]) -> dict[str, str]:
        return self._upload_auth(variables)

    def _op_computePickleUploadAuth(self, variables: Mapping[str, Any]
                                    ) -> dict[str, str]:
        return self._upload_auth(variables)

    def _op_create_submission(self, variables: Mapping[str, Any]) -> dict[str, str]:
        model = self._model_by_id(variables.get("modelId"))
        upload = self._uploaded(variables.get("filename"))
        current = self.state.current_round
        now = datetime.now(UTC)
        if current is None or not (_parse(current["openTime"]) <= now
                                   < _parse(current["closeTime"])):
            raise GraphQLFailure(DEADLINE_PASSED)
        submission = Submission(str(uuid.uuid4()), model.id, upload.key, upload.content,
                                current["number"], now)
        self.state.submissions.append(submission)
        return {"id": submission.id}

    def _op_submissions(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """numerapi `submission_ids(model_id)`: the model's submissions."""
        model = self._model_by_id(variables.get("modelId"))
        return [{"id": s.id, "filename": s.filename, "insertedAt": _iso(s.inserted_at)}
                for s in self.state.submissions if s.model_id == model.id]

    def _op_createComputePickleUpload(self, variables: Mapping[str, Any]
                                      ) -> dict[str, str]:
        model = self._model_by_id(variables.get("modelId"))
        upload = self._uploaded(variables.get("filename"))
        record = ModelUpload(str(uuid.uuid4()), model.id, upload.key, upload.content)
        self.pickles.create(record.id, model.id, upload.key, variables)  # ids checked
        self.state.model_uploads.append(record)
        return {"id": record.id}

    def _op_v2ChangeStake(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        model = self._model_by_id(variables.get("modelId"))
        kind, value = variables.get("type"), Decimal(str(variables.get("value")))
        if kind not in ("increase", "decrease") or value <= 0:
            raise GraphQLFailure(f"invalid stake change {kind} {value}")
        if kind == "decrease" and value > model.stake:
            raise GraphQLFailure("Cannot decrease stake below zero")
        if kind == "increase" and value > self.state.wallet_nmr:
            raise GraphQLFailure("Insufficient NMR balance")
        model.stake += value if kind == "increase" else -value
        self.state.wallet_nmr -= value if kind == "increase" else 0
        self.state.stake_changes.append(StakeChangeRecord(model.id, kind, value))
        due = None if kind == "increase" else _iso(datetime.now(UTC) + timedelta(days=28))
        return {"dueDate": due, "requestedAmount": str(value), "status": "pending",
                "type": kind}

    def _op_releaseStake(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        model = self._model_by_id(variables.get("modelId"))
        value = model.stake
        model.stake = Decimal(0)
        self.state.stake_changes.append(StakeChangeRecord(model.id, "decrease", value))
        return {"id": str(uuid.uuid4()), "dueDate": None, "status": "pending",
                "type": "decrease", "requestedAmount": str(value), "drain": True}

    def _model_by_id(self, model_id: Any) -> FakeModel:
        for model in self.state.models.values():
            if model.id == model_id:
                return model
        raise GraphQLFailure(MODEL_NOT_FOUND.format(model=model_id))

    def _uploaded(self, key: Any) -> Upload:
        upload = self.state.uploads.get(str(key))
        if upload is None:
            raise GraphQLFailure(f"no uploaded file {key}")
        return upload


class GraphQLFailure(Exception):
    """An error the fake answers as {"errors": [{"message": ...}], "data": null}."""


def _score_config(name: str, display: str, multiplier: str, is_payout: bool = True
                  ) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "scoreConfigId": str(uuid.uuid4()), "name": name,
            "version": 1, "displayName": display, "isPayout": is_payout,
            "defaultMultiplier": multiplier, "minMultiplier": multiplier,
            "maxMultiplier": multiplier, "scoringStart": None, "scoringEnd": None}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def operation_of(query: str) -> str | None:
    """First field of a GraphQL document (what the fake dispatches on)."""
    match = re.search(r"\{\s*(\w+)", query or "")
    return match.group(1) if match else None


# --- HTTP -------------------------------------------------------------------------------

def _handler_for(fake: FakeNumerai) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeNumerai

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def handle(self) -> None:
        with self.fake.lock:
            self.fake.connections.add(self.connection)
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            pass  # the client went away (timeouts, truncation tests) or stop() cut it
        finally:
            with self.fake.lock:
                self.fake.connections.discard(self.connection)

    # -- dispatch ----------------------------------------------------------------------

    def do_POST(self) -> None:
        body = self._body()
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        query = payload.get("query") if isinstance(payload, dict) else None
        variables = (payload.get("variables") or {}) if isinstance(payload, dict) else {}
        operation = operation_of(query or "")
        self._record(operation, variables)
        if self._fault(operation):
            return
        if operation in self.fake.authorized and not self._authorized():
            state = self.fake.state
            message = SESSION_INVALID
            if state.auth_error_status != 200:
                self._json(state.auth_error_status, {"errors": [{"message": message}]})
            else:
                self._json(200, {"errors": [{"message": message, "path": [operation]}],
                                 "data": None})
            return
        scope = SCOPE_NEEDED.get(operation or "")
        if scope is not None and scope not in self.fake.state.scopes:
            self._json(200, {"errors": [{"message": MISSING_SCOPE.format(scope=scope),
                                         "path": [operation]}], "data": None})
            return
        try:
            data = self.fake.graphql(operation or "", variables)
        except GraphQLFailure as exc:
            self._json(200, {"errors": [{"message": str(exc), "path": [operation]}],
                             "data": None})
            return
        self._json(200, {"data": {operation: data}})

    def do_GET(self) -> None:
        self._record(None, {})
        path = urlsplit(self.path).path
        fault = self._fault(None, return_truncate=True)
        if fault is True:
            return
        if not path.startswith("/files/"):
            self._json(404, {"detail": "not found"})
            return
        name = unquote(path.removeprefix("/files/"))
        with self.fake.lock:
            dataset = self.fake.state.datasets.get(name)
        if dataset is None:
            self._json(404, {"detail": "NoSuchKey"})
            return
        self._serve(dataset, fault if isinstance(fault, Fault) else None)

    def do_PUT(self) -> None:
        body = self._body()
        self._record(None, {})
        if self._fault(None):
            return
        path = urlsplit(self.path).path
        if not path.startswith("/uploads/"):
            self._json(404, {"detail": "not found"})
            return
        key = unquote(path.removeprefix("/uploads/"))
        with self.fake.lock:
            self.fake.state.uploads[key] = Upload(key, body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- helpers -----------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, operation: str | None, variables: Mapping[str, Any]) -> None:
        with self.fake.lock:
            self.fake.state.requests.append(Request(
                self.command, urlsplit(self.path).path, operation, dict(self.headers.items()),
                dict(variables)))

    def _authorized(self) -> bool:
        state = self.fake.state
        return self.headers.get("Authorization") == f"Token {state.public_id}${state.secret_key}"

    def _fault(self, operation: str | None, return_truncate: bool = False
               ) -> bool | Fault:
        """Apply a matching fault; True if the request is answered, a truncate Fault for
        the file server to apply, False if there is none."""
        fault = self.fake.take_fault(urlsplit(self.path).path, operation)
        if fault is None:
            return False
        if fault.kind == "hang":
            self.fake.release.wait(HANG_LIMIT_S)
            return False  # then answer normally: the client has long given up
        if fault.kind == "truncate":
            return fault if return_truncate else False
        self.send_response(fault.status)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(len(fault.body)))
        self.end_headers()
        self.wfile.write(fault.body)
        return True

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, dataset: Dataset, truncate: Fault | None) -> None:
        content, size = dataset.content, len(dataset.content)
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range in (dataset.etag,
                                                        format_datetime(dataset.last_modified,
                                                                        usegmt=True))):
            match = re.fullmatch(r"bytes=(\d+)-", wanted.strip())
            if match:
                start = int(match.group(1))
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
        body = content[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", dataset.etag)
        self.send_header("Last-Modified", format_datetime(dataset.last_modified, usegmt=True))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if truncate is not None:
            self.wfile.write(body[: truncate.after_bytes])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


# --- helpers for tests ------------------------------------------------------------------

def parquet_bytes(columns: Mapping[str, list[Any]]) -> bytes:
    """A small parquet file's bytes (what a dataset file looks like to the downloader)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(dict(columns)), sink)
    return sink.getvalue()


@pytest.fixture
def fake_numerai() -> Iterator[FakeNumerai]:
    """A running FakeNumerai on 127.0.0.1 (random port), stopped after the test."""
    fake = FakeNumerai().start()
    try:
        yield fake
    finally:
        fake.stop()
