"""A loopback HTTP server (127.0.0.1 only, a thread in the test process) standing in for Google's storage.

``LoopbackHttp.files`` maps URL paths to bytes; ``truncate`` lists paths whose body stops half-way after a
``Content-Length`` announcing the whole file; ``requests`` records every path asked for. Anything else is a
404. Tests never reach the internet.
"""

from __future__ import annotations

import http.server
import threading
from typing import Iterator

import pytest


class LoopbackHttp:
    """The server's state and address; see the module docstring."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                state.requests.append(self.path)
                body = state.files.get(self.path)
                if body is None:
                    self.send_error(404, "no such object")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if self.path in state.truncate else body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback_http() -> Iterator[LoopbackHttp]:
    """A running :class:`LoopbackHttp`, stopped at teardown."""
    server = LoopbackHttp()
    try:
        yield server
    finally:
        server.stop()
