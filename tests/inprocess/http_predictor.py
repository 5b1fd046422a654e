"""A real HTTP server on a local port, standing in for a predictor in the PredictorClient tests: it
records every request (method, path, headers, body) and answers with what a handler returns. It
runs in a thread, so a test may drive its client with asyncio.run as often as it likes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int  # the client's end of the connection: one per connection it opened

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hang_up: bool = False  # close the connection without an answer


Handler = Callable[[Seen], Reply]


def answer(status: int, body: Any = None, **headers: str) -> Handler:
    """A JSON answer (no body for None)."""
    content = b"" if body is None else json.dumps(body).encode()
    kind = {"content-type": "application/json"} if body is not None else {}
    return lambda seen: Reply(status, content, {**kind, **headers})


@dataclass
class Predictor:
    url: str
    seen: list[Seen]


@contextmanager
def predictor(handler: Handler) -> Iterator[Predictor]:
    """Serve `handler` on 127.0.0.1 (a free port) until the block ends."""
    seen: list[Seen] = []

    class Handle(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a predictor's server does

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length) if length else b"",
                int(self.client_address[1]),
            )
            seen.append(request)
            reply = handler(request)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.hang_up:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Predictor(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
