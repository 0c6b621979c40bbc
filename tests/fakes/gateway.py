"""A red-team gateway for tests: an HTTP proxy on 127.0.0.1 in front of the fake Numerai
that forwards each request and then, for the GraphQL operations it is told, loses the answer:
answers 502 or 504 itself, drops the connection, or says nothing until the client gives up.
What reached Numerai is what the fake recorded (`fake.operations()`), so a test can count
how often a mutation was applied.

    def test_x(fake_numerai, gateway):
        gateway.lose_answer("v2ChangeStake", "504")          # every v2ChangeStake, forwarded
        gateway.lose_answer("create_submission", "drop", count=1)
        gateway.unavailable("create_submission", count=1)    # 503, not forwarded
        gateway.unavailable("v2ChangeStake", status=504)     # upstream unreachable
        ... TournamentClient(gateway.url, ...) ...
        assert fake_numerai.operations().count("v2ChangeStake") == 1

Dataset and upload URLs the fake hands out point at the fake itself, not the gateway.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from fakes.numerai_server import HANG_LIMIT_S, FakeNumerai, operation_of

LOSSES = ("502", "504", "drop", "hang")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@dataclass
class Rule:
    """For the next `remaining` requests of `operation` (None: every one): `how` the answer
    is lost after forwarding (LOSSES), or "refuse": HTTP `status` without forwarding."""

    operation: str
    how: str
    remaining: int | None
    status: int = 503
    skip: int = 0  # matching requests let through untouched before the rule applies


class Gateway:
    """The proxy, its rules and what it did (`log`: (operation, what happened))."""

    def __init__(self, upstream: FakeNumerai):
        self.upstream = urlsplit(upstream.url)
        self.rules: list[Rule] = []
        self.log: list[tuple[str | None, str]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread: threading.Thread | None = None

    def start(self) -> Gateway:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def lose_answer(self, operation: str, how: str, count: int | None = None) -> None:
        """Forward the next `count` requests of `operation` (None: all), then lose the answer:
        "502"/"504" (answered by the gateway), "drop" (connection closed, no answer),
        "hang" (no answer until the client's timeout fired)."""
        if how not in LOSSES:
            raise ValueError(f"how must be one of {LOSSES}, got {how!r}")
        with self.lock:
            self.rules.append(Rule(operation, how, count))

    def unavailable(self, operation: str, count: int | None = None, status: int = 503,
                    skip: int = 0) -> None:
        """Answer `count` requests of `operation` (None: all) HTTP `status` without
        forwarding them (503: unavailable; 502/504: the gateway could not reach Numerai),
        after letting the first `skip` of them through."""
        with self.lock:
            self.rules.append(Rule(operation, "refuse", count, status, skip))

    def take(self, operation: str | None) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.operation == operation and (rule.remaining is None
                                                    or rule.remaining > 0):
                    if rule.skip > 0:
                        rule.skip -= 1
                        return None
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=HANG_LIMIT_S)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _handler_for(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.gateway = gateway
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gateway: Gateway

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            super().handle()

    def do_POST(self) -> None:
        self._proxy()

    def do_GET(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            operation = operation_of(json.loads(body or b"{}").get("query") or "")
        except (ValueError, AttributeError):
            operation = None
        rule = self.gateway.take(operation)
        how = rule.how if rule is not None else None
        if rule is not None and how == "refuse":
            self._record(operation, f"{rule.status}, not forwarded")
            self._answer(rule.status, [("Content-Type", "text/html")],
                         f"<html>{rule.status}</html>".encode())
            return
        status, headers, data = self.gateway.forward(self.command, self.path,
                                                     dict(self.headers.items()), body)
        if how is None:
            self._record(operation, f"forwarded, {status} passed on")
            self._answer(status, headers, data)
        elif how in ("502", "504"):
            self._record(operation, f"forwarded, answered {how}")
            self._answer(int(how), [("Content-Type", "text/html")],
                         f"<html>{how} Gateway Time-out</html>".encode())
        elif how == "drop":
            self._record(operation, "forwarded, connection dropped")
            self._drop()
        else:  # hang: the client's read timeout fires, then the connection goes
            self._record(operation, "forwarded, no answer")
            self.gateway.release.wait(HANG_LIMIT_S)
            self._drop()

    def _record(self, operation: str | None, what: str) -> None:
        with self.gateway.lock:
            self.gateway.log.append((operation, what))

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def gateway(fake_numerai: FakeNumerai) -> Iterator[Gateway]:
    """A running Gateway in front of `fake_numerai`, stopped after the test."""
    proxy = Gateway(fake_numerai).start()
    try:
        yield proxy
    finally:
        proxy.stop()
