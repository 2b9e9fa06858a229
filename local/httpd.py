"""A small threaded HTTP/1.1 server base shared by the emulators.

One thread per connection, keep-alive, and every response written with a single send so that
Nagle's algorithm and delayed ACKs do not add 40 ms to each request.

Request targets: a server must accept the absolute form (``GET http://host:port/queues/x?waitseconds=1``, RFC 9112
§3.2.2, what a client sends through a proxy) as well as the origin form (``GET /queues/x?waitseconds=1``). The base
handler turns an absolute-form target into the origin form it designates before any emulator sees it: ``self.path``
is always ``/path[?query]``, exactly as sent (no re-encoding, so signatures over path and query verify), the target
as received stays in ``self.request_target``, and the Host header becomes the target's authority (RFC 9112 §3.2.2:
the authority of an absolute-form target wins over a Host header).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_ABSOLUTE_FORM = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)


def origin_form(target: str) -> tuple[str, str | None]:
    """(origin-form target, authority) of a request target: ``http://h:1/a?b`` -> (``/a?b``, ``h:1``); an
    origin-form (or asterisk-form) target comes back unchanged with no authority. The path and query are kept
    byte for byte; an empty path becomes ``/``."""
    match = _ABSOLUTE_FORM.match(target)
    if match is None:
        return target, None
    rest = match["rest"].partition("#")[0]
    if not rest.startswith("/"):
        rest = "/" + rest
    return rest, match["authority"]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name = "local-emulator"

    request_target = ""

    def version_string(self) -> str:
        return self.server_name

    def parse_request(self) -> bool:
        """The standard parse, then an absolute-form target turned into its origin form (module docstring)."""
        if not super().parse_request():
            return False
        self.request_target = self.path
        self.path, authority = origin_form(self.path)
        if authority is not None:
            del self.headers["Host"]
            self.headers["Host"] = authority
        return True

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
