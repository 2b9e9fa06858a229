"""A small threaded HTTP/1.1 server base shared by the emulators.

One thread per connection, keep-alive, and every response written with a single send so that
Nagle's algorithm and delayed ACKs do not add 40 ms to each request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name = "local-emulator"

    def version_string(self) -> str:
        return self.server_name

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def respond(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + body)
        self._headers_buffer = []

    def respond_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload, indent=1, sort_keys=True).encode()
        self.respond(status, body, [("Content-Type", "application/json")])

    def drop_connection(self) -> None:
        """Closes the socket without answering, as a crashed peer or a broken proxy would."""
        self.close_connection = True


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """Path and query of a raw request target. Names are lower-cased; each pair splits on its first '='
    and values are percent-decoded without turning '+' into a space (receipt handles contain both)."""
    path, _, query = target.partition("?")
    params: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        params[unquote(name).lower()] = unquote(value)
    return unquote(path), params


class BackgroundServer:
    """Runs a Server on a daemon thread; used by the emulators' start()/stop()."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(server).__name__, daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
