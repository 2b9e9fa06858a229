"""A small threaded HTTP/1.1 server base shared by the emulators.

One thread per connection, keep-alive, and every response written with a single send so that
Nagle's algorithm and delayed ACKs do not add 40 ms to each request.

Request targets: a server must accept the absolute form (``GET http://host:port/queues/x?waitseconds=1``, RFC 9112
§3.2.2, what a client sends through a proxy) as well as the origin form (``GET /queues/x?waitseconds=1``). The base
handler turns an absolute-form target into the origin form it designates before any emulator sees it: ``self.path``
is always ``/path[?query]``, exactly as sent (no re-encoding, so signatures over path and query verify), the target
as received stays in ``self.request_target``, and the Host header becomes the target's authority (RFC 9112 §3.2.2:
the authority of an absolute-form target wins over a Host header).

Limits, as a front end (Tengine / nginx) in front of the real services sets them; what breaks one is answered by
the front end, not by the service behind it: a plain HTML error page, ``Connection: close``, never the service's
XML or JSON error (the SDKs report such an answer as an unreadable one, as they would in production):

- a request whose head and body do not arrive within ``request_timeout`` seconds of its first byte (a client
  sending one byte a second) gets 408 and the connection is closed; a keep-alive connection idle for
  ``idle_timeout`` seconds is closed; a response the client does not read within ``write_timeout`` seconds is
  abandoned. Each connection has its own thread, so a slow client never delays another one;
- 400 for a request that is not HTTP/1.x, an HTTP/1.1 request without Host (RFC 9112 §3.2; only with
  ``require_host``, off by default: the repository's raw test clients omit it), two Host headers,
  a Content-Length that is not a number or two that disagree (§6.3), a Transfer-Encoding other than chunked, or a
  malformed chunked body; 413 for a body larger than ``max_body_bytes`` (not read; the connection is closed);
  414 / 431 for a request line or headers too long (the standard library's limits);
- an exception escaping an emulator's handler is answered 500 (when no answer was started) and logged, and the
  connection closed: never a connection dropped silently, never a thread left waiting.

A chunked request body (Transfer-Encoding wins over Content-Length) is decoded by ``read_body``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

logger = logging.getLogger("local.httpd")

IDLE_TIMEOUT_SECONDS = 75.0  # nginx's keepalive_timeout
REQUEST_TIMEOUT_SECONDS = 30.0  # head and body, from the request's first byte (nginx: client_header_timeout 60 s)
WRITE_TIMEOUT_SECONDS = 60.0
MAX_BODY_BYTES = 4 * 1024 * 1024
_MAX_CHUNK_LINE = 1024

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


class HttpProblem(Exception):
    """A request the front end refuses (module docstring): answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadBody(HttpProblem, ValueError):
    """The body's framing is broken (Content-Length, chunked): 400."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class BodyTooLarge(HttpProblem):
    def __init__(self, size: int | None, limit: int) -> None:
        said = f"{size} bytes" if size is not None else "more"
        super().__init__(413, f"the request body ({said}) is larger than {limit} bytes")
        self.limit = limit


class _DeadlineReader(io.RawIOBase):
    """The socket as the handler reads it, each receive bounded: while a connection waits for a request, by the
    idle timeout; once a request's first byte came, by what is left of its request timeout (so one byte a second
    does not keep a request alive forever). Raises TimeoutError."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._idle_timeout = IDLE_TIMEOUT_SECONDS
        self._request_timeout = REQUEST_TIMEOUT_SECONDS
        self._until: float | None = None  # the end of the current request's time, once it started
        self._idle_until = time.monotonic() + self._idle_timeout

    def readable(self) -> bool:
        return True

    def wait_for_request(self, idle_timeout: float, request_timeout: float) -> None:
        self._idle_timeout, self._request_timeout = idle_timeout, request_timeout
        self._until, self._idle_until = None, time.monotonic() + idle_timeout

    def request_read(self) -> None:
        """The request is in: what follows (a long poll, a function running) is not bounded here."""
        self._until = self._idle_until = None

    @property
    def request_started(self) -> bool:
        return self._until is not None

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        until = self._until if self._until is not None else self._idle_until
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._sock.settimeout(left)
        received = self._sock.recv_into(buffer)
        if received and self._until is None and self._idle_until is not None:
            self._until = time.monotonic() + self._request_timeout  # a request started
        return received


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # an unreadable request line is answered with a status line, not bare HTML
    server_name = "local-emulator"
    # Limits (module docstring); a test may lower them on a subclass or with monkeypatch.
    idle_timeout = IDLE_TIMEOUT_SECONDS
    request_timeout = REQUEST_TIMEOUT_SECONDS
    write_timeout = WRITE_TIMEOUT_SECONDS
    max_body_bytes = MAX_BODY_BYTES
    # RFC 9112 §3.2 (and every front end) refuses an HTTP/1.1 request without Host; off by default because the raw
    # clients of this repository's tests (tests/acs3_support.py send) leave it out of origin-form requests.
    require_host = False

    request_target = ""
    _answered = False

    def version_string(self) -> str:
        return self.server_name

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader: reads go through the deadline reader instead
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 64 * 1024)

    def handle_one_request(self) -> None:
        """One request, within the limits of the module docstring; what the handler does not answer is answered."""
        self._answered = False
        self._reader.wait_for_request(self.idle_timeout, self.request_timeout)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                self.close_connection = True
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except HttpProblem as problem:
            self._refuse(problem.status, problem.message)
        except TimeoutError:
            if self._reader.request_started or self._answered:
                self._refuse(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive in time")
            else:  # an idle keep-alive connection: closed without a word, as a front end does
                self.close_connection = True
        except (ConnectionError, OSError):
            self.close_connection = True  # the client went away (or the socket broke): nobody to answer
        except Exception:  # an emulator bug: answered, logged, and the connection closed
            logger.exception("%s failed on %s %s", type(self).__name__, self.command, self.path)
            self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, "the emulator failed on this request")
        finally:
            self._reader.request_read()

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        if self._answered:
            return  # an answer was started: the closed connection is all the client can be told
        try:
            self.connection.settimeout(self.write_timeout)
            self._headers_buffer = []
            self.send_error(status, message)
            self.wfile.flush()
        except OSError:
            pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard reason phrase on the status line (as a front end words it); the detail in the page."""
        if message is not None and explain is None:
            message, explain = None, message
        super().send_error(code, message, explain)

    def parse_request(self) -> bool:
        """The standard parse, then an absolute-form target turned into its origin form (module docstring), then
        the framing rules of the module docstring."""
        if not super().parse_request():
            return False
        with contextlib.suppress(UnicodeError):  # the stdlib reads the request line as Latin-1; raw non-ASCII in a
            self.path = self.path.encode("latin-1").decode("utf-8")  # target is UTF-8 (what a client signed)
        self.request_target = self.path
        self.path, authority = origin_form(self.path)
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            self.send_error(HTTPStatus.BAD_REQUEST, "more than one Host header")
            return False
        if self.require_host and not hosts and authority is None and self.request_version == "HTTP/1.1":
            self.send_error(HTTPStatus.BAD_REQUEST, "an HTTP/1.1 request needs a Host header")
            return False
        if authority is not None:
            del self.headers["Host"]
            self.headers["Host"] = authority
        problem = self._framing_problem()
        if problem is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        return True

    def _framing_problem(self) -> str | None:
        codings = self.headers.get_all("Transfer-Encoding") or []
        if codings:
            names = [name.strip().lower() for value in codings for name in value.split(",") if name.strip()]
            if names != ["chunked"]:
                return f"Transfer-Encoding {', '.join(codings)!r} is not supported (only chunked)"
            if self.headers.get("Content-Length") is not None:
                self.close_connection = True  # the framing was ambiguous (RFC 9112 §6.1): start afresh after it
            return None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if len(lengths) > 1:
            return "Content-Length headers disagree"
        if lengths and not all(value.isdigit() and value.isascii() for value in lengths):
            return f"Content-Length {next(iter(lengths))!r} is not a number"
        return None

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        """The request body (chunked framing undone); BadBody, BodyTooLarge or TimeoutError when it cannot be had.
        After an error the connection is closed (its framing is lost)."""
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunks()
            length = int(self.headers.get("Content-Length") or 0)  # parse_request checked it is a number
            if length > self.max_body_bytes:
                raise BodyTooLarge(length, self.max_body_bytes)
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                raise BadBody(f"the connection closed after {len(body)} of {length} body bytes")
            return body
        except (HttpProblem, TimeoutError, OSError):
            self.close_connection = True
            raise

    def _read_chunks(self) -> bytes:
        parts, size_so_far = [], 0
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadBody("the request body is not valid chunked transfer encoding") from None
            if size < 0:
                raise BadBody("the request body is not valid chunked transfer encoding")
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            size_so_far += size
            if size_so_far > self.max_body_bytes:
                raise BodyTooLarge(None, self.max_body_bytes)
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
                raise BadBody("the request body is not valid chunked transfer encoding")
            parts.append(chunk)

    def respond(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self._reader.request_read()
        self.connection.settimeout(self.write_timeout)
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
