"""The MNS queue service on the wire: routing, authentication, faults, and the admin endpoint."""

from __future__ import annotations

import email.utils
import json
import re
import secrets
import time
from pathlib import Path

from local.faults import FaultConfigError, FaultPlan
from local.httpd import BackgroundServer, Handler, Server, split_target
from local.mns import errors, signing, wire
from local.mns.credentials import ALL_OPERATIONS, CredentialStore, StsCredential, authorize, check_token
from local.mns.persistence import NullJournal, SqliteJournal
from local.mns.queues import QueueStore
from local.mns.stats import Stats

API_VERSION = "2015-06-06"
AUTHORIZATION = re.compile(r"^MNS ([^:\s]+):(\S+)$")
ADMIN_PREFIX = "/_admin"
FAULT_KINDS = ("internal_error", "throttle", "drop_connection", "token_expired")


class Request:
    """One parsed MNS request."""

    def __init__(self, method: str, target: str, headers, body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        path, self.params = split_target(target)
        parts = path.strip("/").split("/")
        self.queue = parts[1] if len(parts) >= 2 and parts[0] == "queues" else ""
        self.operation = self._classify(parts)

    def param(self, name: str) -> str | None:
        return self.params.get(name.lower())

    def _classify(self, parts: list[str]) -> str:
        method = self.method
        if parts[0] != "queues" or len(parts) not in (2, 3) or not parts[1]:
            return "Unknown"
        if len(parts) == 2:
            if method == "PUT":
                override = (self.param("metaoverride") or "").lower() == "true"
                return "SetQueueAttributes" if override else "CreateQueue"
            return {"GET": "GetQueueAttributes", "DELETE": "DeleteQueue"}.get(method, "Unknown")
        if parts[2] != "messages":
            return "Unknown"
        if method == "POST":
            return "BatchSendMessage" if b"<Messages" in self.body[:200] else "SendMessage"
        if method == "GET":
            batch = self.param("numOfMessages") is not None
            if (self.param("peekonly") or "").lower() == "true":
                return "BatchPeekMessage" if batch else "PeekMessage"
            return "BatchReceiveMessage" if batch else "ReceiveMessage"
        if method == "DELETE":
            return "DeleteMessage" if self.param("ReceiptHandle") is not None else "BatchDeleteMessage"
        if method == "PUT":
            return "ChangeMessageVisibility"
        return "Unknown"

    def int_param(self, name: str) -> int | None:
        raw = self.param(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise errors.invalid_argument(f"The value of {name} is not a valid integer: {raw!r}.") from None


class MnsHandler(Handler):
    server_name = "AliyunMQS"
    server: MnsServer

    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_GET

    def _dispatch(self) -> None:
        body = self.read_body()
        if self.path.startswith(ADMIN_PREFIX):
            self.server.emulator.admin(self, body)
            return
        self.server.emulator.serve(self, Request(self.command, self.path, self.headers, body))


class MnsServer(Server):
    emulator: MnsEmulator


class MnsEmulator:
    """An MNS queue endpoint that the real aliyun-mns-sdk accepts unchanged. See README, "MNS emulator"."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        owner: tuple[str, str] = ("local-owner", "local-owner-secret"),
        publisher: tuple[str, str] = ("alicom-publisher", "alicom-publisher-secret"),
        data_dir: str | Path | None = None,
        faults: dict | None = None,
        max_clock_skew: float | None = 900.0,
        host_id: str | None = None,
    ) -> None:
        self.owner = owner
        self.publisher = publisher
        self.credentials = CredentialStore(owner, publisher)
        self.fault_plan = FaultPlan(ALL_OPERATIONS, FAULT_KINDS, faults)
        self.store = QueueStore(SqliteJournal(data_dir) if data_dir else NullJournal())
        self.stats_counters = Stats()
        self.max_clock_skew = max_clock_skew
        server = MnsServer((host, port), MnsHandler)
        server.emulator = self
        self._background = BackgroundServer(server)
        self.endpoint = f"http://{host}:{self._background.port}"
        self.admin_url = self.endpoint + ADMIN_PREFIX
        self.host_id = host_id or self.endpoint

    # ---- lifecycle and Python-side admin ----------------------------------------------------------------

    def start(self) -> MnsEmulator:
        self._background.start()
        return self

    def stop(self) -> None:
        self.store.close()
        self._background.stop()

    def __enter__(self) -> MnsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def issue_sts(self, queue: str, ttl_seconds: float = 3600) -> StsCredential:
        return self.credentials.issue_sts(queue, ttl_seconds)

    def expire_sts(self, access_key_id: str | None = None) -> int:
        return self.credentials.expire_sts(access_key_id)

    def set_faults(self, config: dict) -> None:
        self.fault_plan.replace(config)

    def faults(self) -> dict:
        return self.fault_plan.to_dict()

    def stats(self) -> dict:
        return {"operations": self.stats_counters.snapshot(), "queues": self.store.depths()}

    # ---- the MNS protocol -----------------------------------------------------------------------------

    def serve(self, handler: MnsHandler, request: Request) -> None:
        operation = request.operation
        self.stats_counters.request(operation)
        delay = self.fault_plan.latency_seconds(operation)
        if delay:
            time.sleep(delay)
        if self.fault_plan.strikes(operation, "drop_connection"):
            self.stats_counters.fault(operation, "drop_connection")
            handler.drop_connection()
            return
        request_id = _request_id()
        try:
            status, body, headers = self._handle(request)
            code = self._sub_error_code(status, body)
        except errors.MnsError as error:
            status, body, headers, code = (
                error.status,
                wire.error(error.code, error.message, request_id, self.host_id),
                [],
                error.code,
            )
        self._answer(handler, operation, status, body, headers, request_id, code)

    @staticmethod
    def _sub_error_code(status: int, body: bytes) -> str | None:
        if status < 400:
            return None
        match = re.search(rb"<ErrorCode>([^<]+)</ErrorCode>", body)
        return match.group(1).decode() if match else None

    def _answer(self, handler, operation, status, body, headers, request_id, code) -> None:
        headers = [
            *headers,
            ("Connection", "keep-alive"),
            ("x-mns-version", API_VERSION),
            ("x-mns-request-id", request_id),
        ]
        if body:
            headers.append(("Content-Type", "text/xml;charset=utf-8"))
        self.stats_counters.response(operation, status, code)
        handler.respond(status, body, headers)

    def _authenticate(self, request: Request):
        headers = request.headers
        authorization = headers.get("Authorization")
        if authorization is None:
            raise errors.MnsError(400, "MissingAuthorizationHeader", "The Authorization header is missing.")
        date = headers.get("Date")
        if date is None:
            raise errors.MnsError(400, "MissingDateHeader", "The Date header is missing.")
        match = AUTHORIZATION.match(authorization)
        if match is None:
            raise errors.MnsError(
                400, "InvalidAuthorizationHeader", "The Authorization header should be 'MNS AccessKeyId:Signature'."
            )
        principal = self.credentials.lookup(match.group(1))
        expected = signing.signature(
            principal.secret, signing.string_to_sign(request.method, headers.items(), request.target)
        )
        if not secrets.compare_digest(expected, match.group(2)):
            raise errors.MnsError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        self._check_date(date)
        presented_md5 = headers.get("Content-MD5")
        if presented_md5 is not None and presented_md5 != signing.content_md5(request.body):
            raise errors.MnsError(400, "InvalidDegist", "The Content-MD5 you specified is not valid.")
        return principal

    def _check_date(self, date: str) -> None:
        if self.max_clock_skew is None:
            return
        try:
            sent = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise errors.invalid_argument("The Date header is not an RFC 1123 date.") from None
        if abs(time.time() - sent) > self.max_clock_skew:
            raise errors.MnsError(408, "TimeExpired", "The http request you sent is expired.")

    def _handle(self, request: Request) -> tuple[int, bytes, list[tuple[str, str]]]:
        operation = request.operation
        principal = self._authenticate(request)
        check_token(principal, request.headers.get("security-token"))
        if principal.kind == "sts" and self.fault_plan.strikes(operation, "token_expired"):
            self.stats_counters.fault(operation, "token_expired")
            raise errors.token_expired()
        if operation == "Unknown":
            raise errors.MnsError(
                400, "InvalidRequestURL", f"The request URL is not valid: {request.method} {request.target}"
            )
        authorize(principal, operation, request.queue)
        for kind, error in (("throttle", errors.throttled), ("internal_error", errors.internal_error)):
            if self.fault_plan.strikes(operation, kind):
                self.stats_counters.fault(operation, kind)
                raise error()
        return getattr(self, "_op_" + operation)(request)

    # ---- operations ---------------------------------------------------------------------------------

    def _op_CreateQueue(self, request: Request):
        created = self.store.create_queue(request.queue, wire.parse_queue_attributes(request.body or b"<Queue/>"))
        location = [("Location", f"{self.endpoint}/queues/{request.queue}")]
        return (201 if created else 204), b"", location

    def _op_SetQueueAttributes(self, request: Request):
        self.store.set_attributes(request.queue, wire.parse_queue_attributes(request.body or b"<Queue/>"))
        return 204, b"", []

    def _op_GetQueueAttributes(self, request: Request):
        queue, counts = self.store.get_queue(request.queue)
        return 200, wire.queue(queue, counts), []

    def _op_DeleteQueue(self, request: Request):
        self.store.delete_queue(request.queue)
        return 204, b"", []

    def _op_SendMessage(self, request: Request):
        batch, incoming = wire.parse_messages(request.body)
        if batch:
            return self._op_BatchSendMessage(request)
        (result,) = self.store.send(request.queue, incoming)
        if isinstance(result, errors.MnsError):
            raise result
        return 201, wire.sent(result.message_id, result.body_md5), []

    def _op_BatchSendMessage(self, request: Request):
        batch, incoming = wire.parse_messages(request.body)
        if not batch:
            return self._op_SendMessage(request)
        results = self.store.send(request.queue, incoming)
        outcomes = [
            (r.code, r.message, False) if isinstance(r, errors.MnsError) else (r.message_id, r.body_md5, True)
            for r in results
        ]
        failed = any(not ok for _, _, ok in outcomes)
        return (500 if failed else 201), wire.batch_sent(outcomes), []

    def _receive(self, request: Request, count: int, batch: bool):
        received = self.store.receive(request.queue, count, request.int_param("waitseconds"))
        return 200, wire.received(received, batch), []

    def _op_ReceiveMessage(self, request: Request):
        return self._receive(request, 1, batch=False)

    def _op_BatchReceiveMessage(self, request: Request):
        return self._receive(request, request.int_param("numOfMessages") or 0, batch=True)

    def _op_PeekMessage(self, request: Request):
        (message,) = self.store.peek(request.queue, 1)
        return 200, wire.received([(message, None)], batch=False), []

    def _op_BatchPeekMessage(self, request: Request):
        messages = self.store.peek(request.queue, request.int_param("numOfMessages") or 0)
        return 200, wire.received([(m, None) for m in messages], batch=True), []

    def _op_DeleteMessage(self, request: Request):
        handle = request.param("ReceiptHandle") or ""
        if not handle:
            raise errors.MnsError(400, "MissingReceiptHandle", "The receipt handle should not be empty.")
        failures = self.store.delete(request.queue, [handle])
        if failures:
            raise failures[0][1]
        return 204, b"", []

    def _op_BatchDeleteMessage(self, request: Request):
        failures = self.store.delete(request.queue, wire.parse_receipt_handles(request.body))
        if failures:
            return 404, wire.batch_delete_errors(failures), []
        return 204, b"", []

    def _op_ChangeMessageVisibility(self, request: Request):
        handle = request.param("ReceiptHandle")
        if not handle:
            raise errors.MnsError(400, "MissingReceiptHandle", "The receipt handle should not be empty.")
        seconds = request.int_param("VisibilityTimeout")
        if seconds is None:
            raise errors.MnsError(400, "MissingVisibilityTimeout", "The VisibilityTimeout should be given.")
        new_handle, next_visible = self.store.change_visibility(request.queue, handle, seconds)
        return 200, wire.visibility_changed(new_handle, next_visible), []

    # ---- admin (JSON, unsigned; local use only) -------------------------------------------------------

    def admin(self, handler: MnsHandler, body: bytes) -> None:
        route = (handler.command, handler.path[len(ADMIN_PREFIX) :].split("?")[0].rstrip("/"))
        try:
            payload = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as exc:
            handler.respond_json(400, {"error": f"the body is not JSON: {exc}"})
            return
        try:
            if route == ("GET", "/stats"):
                handler.respond_json(200, self.stats())
            elif route == ("GET", "/faults"):
                handler.respond_json(200, self.faults())
            elif route == ("PUT", "/faults"):
                self.set_faults(payload)
                handler.respond_json(200, self.faults())
            elif route == ("DELETE", "/faults"):
                self.set_faults({})
                handler.respond_json(200, self.faults())
            elif route == ("POST", "/sts"):
                queue = payload.get("queue")
                if not isinstance(queue, str) or not queue:
                    raise FaultConfigError("'queue' is required")
                credential = self.issue_sts(queue, float(payload.get("ttl_seconds", 3600)))
                handler.respond_json(201, credential.to_dict())
            elif route == ("POST", "/sts/expire"):
                handler.respond_json(200, {"expired": self.expire_sts(payload.get("access_key_id"))})
            else:
                handler.respond_json(404, {"error": f"no admin route {route[0]} {route[1]}"})
        except (FaultConfigError, ValueError, TypeError) as exc:
            handler.respond_json(400, {"error": str(exc)})


def _request_id() -> str:
    return secrets.token_hex(12).upper()
