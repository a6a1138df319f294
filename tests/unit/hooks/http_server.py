"""A real HTTP server on a loopback address that answers from a script and records requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class ScriptedServer:
    """Answers requests with ``script`` in order (the last entry repeats): each entry is
    ``(status, headers)``."""

    host: str
    port: int = 0
    script: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            index = min(len(self.received) - 1, len(self.script) - 1)
            return self.script[index]


@contextmanager
def scripted_server(host: str = "127.0.0.1", script=None) -> Iterator[ScriptedServer]:
    state = ScriptedServer(host=host, script=list(script or [(200, {})]))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with state.lock:
                state.received.append(Received("POST", self.path, dict(self.headers.items()),
                                               body))
            self._answer()

        def do_GET(self) -> None:
            with state.lock:
                state.received.append(Received("GET", self.path, dict(self.headers.items()), b""))
            self._answer()

        def _answer(self) -> None:
            status, headers = state.answer()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value.replace("{url}", state.url))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
