"""A JSON webhook on 127.0.0.1 as apprise's `json://` targets post to it: every POST's path,
headers and JSON body ({"version", "title", "message", "type", "attachments"}) recorded, the
answer's status scripted (200 by default).

    with Webhook.running() as hook:
        url = hook.url("/hook")          # json://127.0.0.1:PORT/hook
        ...
        hook.posts[0].body["title"]
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    raw: str
    body: dict[str, Any]


class Webhook:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                hook.posts.append(Post(self.path, dict(self.headers), raw, json.loads(raw)))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"json://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Webhook]:
        hook = cls()
        thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield hook
        finally:
            hook.server.shutdown()
            hook.server.server_close()
            thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
