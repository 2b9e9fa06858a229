"""The FC InvokeFunction endpoint, signature checked, in both generations, over the same functions, instances, async
queue and destination: synchronous, and asynchronous (x-fc-invocation-type: Async -> 202, queued for the emulator's
life, run in the background, retried per the function's async settings, and on final failure a destination message
sent to MNS).

- FC 2.0, API 2016-08-15, as the real fc2 client calls it: ``POST /2016-08-15/services/<service>[.<qualifier>]/
  functions/<function>/invocations``, signed ``Authorization: FC <id>:<signature>`` (signing.py); errors as
  ``{"ErrorCode", "ErrorMessage"}``.
- FC 3.0, API 2023-03-30, as alibabacloud_fc20230330 calls it: ``POST /2023-03-30/functions/<name>/invocations
  [?qualifier=<q>]``, V3-signed (``ACS3-HMAC-SHA256``, local/acs3.py), headers x-fc-invocation-type (Sync | Async),
  x-fc-log-type, x-fc-async-task-id; errors as ``{"Code", "Message", "RequestId"}`` (the FC 3.0 Error struct).

FC 3.0 has no services, so a 3.0 name is mapped to the emulator's functions (FunctionSpec: a service and a name, as
the FC 2.0 template defines them) thus: ``<service>$<function>`` names that function, as FC 3.0 names a function
migrated from FC 2.0 (and as `s cli fc3 s2tos3` converts names); a plain ``<function>`` names the one function of
that name when exactly one service has it (several: 404 FunctionNotFound, asking for the ``$`` form).

V3 signature errors, FC's codes where FC has one: 403 SignatureNotMatch (wrong signature; also x-acs-content-sha256
not the hash of the body), 403 InvalidAccessKeyID, 403 InvalidSecurityToken (x-acs-security-token), 403
RequestTimeTooSkewed (x-acs-date more than 15 minutes away), 400 MissingRequiredHeader (Authorization, x-acs-date,
x-acs-signature-nonce or x-acs-content-sha256 absent), 400 InvalidArgument (malformed Authorization or x-acs-date,
host or an x-acs-* header unsigned). CHOSEN, FC documents none: 403 SignatureNonceUsed for a replayed
x-acs-signature-nonce, 409 AsyncTaskAlreadyExists for an x-fc-async-task-id used before on that function (FC answers
a duplicate task id with 409; the emulator accepts task ids whether or not the function enables async tasks).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import unquote

from local import acs3
from local.acs3 import Acs3Problem
from local.faults import FaultConfigError, FaultPlan
from local.fc import signing
from local.fc.asyncq import AsyncDispatcher, AsyncEvent
from local.fc.context import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, LATEST, Credentials, build_context, new_request_id
from local.fc.destination import MnsDestination, destination_message
from local.fc.functions import FunctionSpec
from local.fc.instance import InstancePool, Outcome, reserved_environment
from local.fc.stats import Stats
from local.httpd import BackgroundServer, BadBody, BodyTooLarge, Handler, Server, split_target

API_VERSION = "2016-08-15"
API_VERSION_3 = "2023-03-30"
ADMIN_PREFIX = "/_admin"
OPERATION = "InvokeFunction"
FAULT_KINDS = ("internal_error", "throttle", "resource_exhausted", "drop_connection")
ASYNC_PAYLOAD_LIMIT = 128 * 1024
SYNC_PAYLOAD_LIMIT = 32 * 1024 * 1024
MAX_ASYNC_DELAY_SECONDS = 3600
INVOKE_PATH = re.compile(rf"^/{API_VERSION}/services/([^/]+)/functions/([^/]+)/invocations/?$")
INVOKE_PATH_3 = re.compile(rf"^/{API_VERSION_3}/functions/([^/]+)/invocations/?$")  # matched on the raw path
TASK_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
AUTHORIZATION = re.compile(r"^FC ([^:\s]+):(\S+)$")

logger = logging.getLogger("local.fc")


class FcError(Exception):
    """An API error, answered as {"ErrorCode", "ErrorMessage"} JSON (fc2 cannot parse anything else) on the FC 2.0
    API and as {"Code", "Message", "RequestId"} on the FC 3.0 one."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str, request_id: str, v3: bool) -> bytes:
    if v3:
        return json.dumps({"Code": code, "Message": message, "RequestId": request_id}).encode()
    return json.dumps({"ErrorCode": code, "ErrorMessage": message}).encode()


SIGNATURE_NOT_MATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your access key and signing method"
)
INJECTED = {
    "internal_error": (500, "InternalServerError", "an internal error has occurred. Please retry."),
    "throttle": (429, "ResourceThrottled", "Reserve resource exceeded limit"),
    "resource_exhausted": (503, "ResourceExhausted", "Function Compute resources are insufficient. Please retry."),
}


class MalformedBody(BadBody):
    """A body whose framing is broken (a bad chunked encoding, fewer bytes than its Content-Length): 400."""


class FcHandler(Handler):
    server_name = "fc-local-emulator"
    server: FcServer
    max_body_bytes = SYNC_PAYLOAD_LIMIT  # larger: EntityTooLarge, without reading it

    def do_POST(self) -> None:
        self.server.emulator.serve(self)

    do_GET = do_PUT = do_DELETE = do_POST

    def read_body(self) -> bytes:
        """The body, chunked framing undone (local/httpd.py). A malformed body raises MalformedBody, a body over
        SYNC_PAYLOAD_LIMIT BodyTooLarge; after either the connection cannot be reused."""
        try:
            return super().read_body()
        except MalformedBody:
            raise
        except BadBody as bad:
            raise MalformedBody(bad.message) from None


class FcServer(Server):
    emulator: FcEmulator


class FcEmulator:
    """Function Compute 2.0 on loopback. The functions run as worker processes (local/fc/instance.py).

    `credentials` are the AccessKeys the endpoint accepts: {id: secret} or {id: (secret, security_token[,
    expires_at])} (epoch seconds; `expire_token` expires one now).
    The context (and ALIBABA_CLOUD_* variables) of every function carry `function_credentials`, by default the
    first of `credentials`, so a function can call this emulator back with fc2 (the drainer -> processor case).
    Each instance's environment is this process's, then spec.environment, then `environment`, then FC's
    reserved FC_* / ALIBABA_CLOUD_* variables.
    """

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: Mapping[str, str | tuple[str, str]] | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        mns_endpoint: str | None = None,
        mns_credentials: tuple[str, str] | None = None,
        async_workers: int = 2,
        retry_backoff_seconds: float = 0.2,
        retry_backoff_max_seconds: float = 5.0,
        faults: dict | None = None,
        function_credentials: Credentials | None = None,
        environment: Mapping[str, str] | None = None,
        max_instances_per_function: int = 4,
        max_clock_skew: float | None = 900.0,
    ) -> None:
        self.functions: dict[tuple[str, str], FunctionSpec] = {}
        for spec in functions:
            if spec.key in self.functions:
                raise ValueError(f"function {spec.service}/{spec.name} is defined twice")
            self.functions[spec.key] = spec
        self._credentials: dict[str, tuple[str, str]] = {}
        self._token_expiry: dict[str, float] = {}  # key id -> epoch seconds, for STS credentials given one
        for key_id, value in (credentials if credentials is not None else {"local-ak": "local-sk"}).items():
            secret, token, *expiry = (value, "") if isinstance(value, str) else value
            self._credentials[key_id] = (secret, token)
            if expiry:
                self._token_expiry[key_id] = float(expiry[0])
        if not self._credentials:
            raise ValueError("the FC emulator needs at least one credential")
        if function_credentials is None:
            key_id, (secret, token) = next(iter(self._credentials.items()))
            function_credentials = Credentials(key_id, secret, token)
        self.function_credentials = function_credentials
        self.account_id = account_id
        self.region = region
        self.environment: dict[str, str] = dict(environment or {})
        self.max_clock_skew = max_clock_skew
        self.fault_plan = FaultPlan((OPERATION,), FAULT_KINDS, faults)
        self.counters = Stats()
        self._nonces = acs3.NonceBook(2 * (max_clock_skew or 900.0))
        self._task_ids: dict[tuple[str, str], set[str]] = {}
        self._task_lock = threading.Lock()
        self._destination = MnsDestination(mns_endpoint, mns_credentials) if mns_endpoint and mns_credentials else None
        self._pools = {
            key: InstancePool(
                spec,
                environment=lambda instance_id, spec=spec: self._instance_environment(spec, instance_id),
                context_for_initializer=lambda spec=spec: self._context(spec, new_request_id()),
                max_instances=max_instances_per_function,
            )
            for key, spec in self.functions.items()
        }
        self._dispatcher = AsyncDispatcher(
            self._attempt,
            self._async_succeeded,
            self._async_retrying,
            self._async_failed,
            workers=async_workers,
            backoff_seconds=retry_backoff_seconds,
            backoff_max_seconds=retry_backoff_max_seconds,
        )
        server = FcServer((host, port), FcHandler)
        server.emulator = self
        self._background = BackgroundServer(server)
        self.endpoint = f"http://{host}:{self._background.port}"
        self.admin_url = self.endpoint + ADMIN_PREFIX

    # ---- lifecycle and Python-side admin ----------------------------------------------------------------

    def start(self) -> FcEmulator:
        self._dispatcher.start()
        self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()
        self._dispatcher.stop(timeout=0)
        for pool in self._pools.values():
            pool.close()
        self._dispatcher.stop(timeout=5)

    def __enter__(self) -> FcEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once no asynchronous invocation is queued or running (destination messages included)."""
        return self._dispatcher.wait_idle(timeout)

    def set_faults(self, config: dict) -> None:
        self.fault_plan.replace(config)

    def faults(self) -> dict:
        return self.fault_plan.to_dict()

    def stats(self) -> dict:
        depths = self._dispatcher.depths()
        gauges = {}
        for key, pool in self._pools.items():
            name = f"{key[0]}/{key[1]}"
            gauges[name] = {"queue_depth": 0, "in_flight": 0, **depths.get(name, {}), "instances": pool.size}
        return self.counters.snapshot(list(gauges), gauges)

    def invocations(self, function: str | None = None, request_id: str | None = None, limit: int = 100) -> list[dict]:
        """Recent attempts, oldest first: request_id, function ("service/name"), type, attempt, status, ..."""
        return self.counters.records(function, request_id, limit)

    # ---- running functions ------------------------------------------------------------------------------

    def _instance_environment(self, spec: FunctionSpec, instance_id: str) -> dict[str, str]:
        reserved = reserved_environment(
            spec, self.function_credentials, region=self.region, account_id=self.account_id, instance_id=instance_id
        )
        return {**os.environ, **spec.environment, **self.environment, **reserved}

    def _context(self, spec: FunctionSpec, request_id: str, qualifier: str = LATEST):
        return build_context(
            spec,
            self.function_credentials,
            request_id=request_id,
            region=self.region,
            account_id=self.account_id,
            qualifier=qualifier,
        )

    def _run(
        self,
        spec: FunctionSpec,
        request_id: str,
        payload: bytes,
        qualifier: str,
        kind: str,
        attempt: int,
        api: str = API_VERSION,
    ):
        started = time.time()
        outcome = self._pools[spec.key].invoke(payload, self._context(spec, request_id, qualifier))
        self.counters.record(
            {
                "request_id": request_id,
                "function": f"{spec.service}/{spec.name}",
                "api": api,
                "type": kind,
                "attempt": attempt,
                "status": "succeeded" if outcome.ok else "failed",
                "error": outcome.error,
                "started_at": started,
                "duration_ms": round(outcome.duration_ms, 3),
                "instance_id": outcome.instance_id,
            }
        )
        return outcome

    def _attempt(self, event: AsyncEvent) -> Outcome:
        self.counters.add(event.function, "attempts")
        outcome = self._run(
            event.spec, event.request_id, event.payload, event.qualifier, "Async", event.attempts + 1, event.api
        )
        if not outcome.ok:
            self.counters.add(event.function, "failed_attempts")
        return outcome

    def _async_succeeded(self, event: AsyncEvent) -> None:
        self.counters.add(event.function, "succeeded")

    def _async_retrying(self, event: AsyncEvent, delay: float) -> None:
        self.counters.add(event.function, "retries")

    def _async_failed(self, event: AsyncEvent, condition: str) -> None:
        spec = event.spec
        if condition == "MaxAsyncEventAgeExceeded":
            self.counters.add(event.function, "expired")
        queue = spec.failure_queue
        logger.info(
            "async invocation failed for good",
            extra={"request_id": event.request_id, "function": event.function, "condition": condition},
        )
        if queue is None:
            return
        if self._destination is None:
            logger.warning("function %s has an on-failure destination but no MNS endpoint is configured", spec.name)
            self.counters.add(event.function, "destination_errors")
            return
        message = destination_message(
            request_id=event.request_id,
            function_arn=event.function_arn or spec.arn(self.region, self.account_id, event.qualifier),
            condition=condition,
            invoke_count=event.attempts,
            payload=event.payload,
            last=event.last,
        )
        try:
            self._destination.send(queue, message)
        except Exception as exc:  # a broken destination must not stop the async workers
            logger.warning("destination message for %s not delivered: %s", event.request_id, exc)
            self.counters.add(event.function, "destination_errors")
            return
        self.counters.add(event.function, "destination_messages")

    # ---- the wire ---------------------------------------------------------------------------------------

    def serve(self, handler: FcHandler) -> None:
        path, _, query = handler.path.partition("?")
        v3 = path.startswith(f"/{API_VERSION_3}/")
        request_id = new_request_id()
        try:
            body = handler.read_body()
        except (MalformedBody, BodyTooLarge) as exc:
            code, message = "InvalidArgument", str(exc)
            if isinstance(exc, BodyTooLarge):
                code, message = "EntityTooLarge", f"payload size exceeds maximum allowed size ({exc.limit} bytes)"
            payload = error_body(code, message, request_id, v3)
            headers = [("Content-Type", "application/json"), ("X-Fc-Request-Id", request_id), ("Connection", "close")]
            handler.respond(400, payload, headers)
            return
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            self._admin(handler, body)
            return
        self.counters.request()
        delay = self.fault_plan.latency_seconds(OPERATION)
        if delay:
            time.sleep(delay)
        if self.fault_plan.strikes(OPERATION, "drop_connection"):
            self.counters.fault("drop_connection")
            handler.drop_connection()
            return
        try:
            for kind, (status, code, message) in INJECTED.items():
                if self.fault_plan.strikes(OPERATION, kind):
                    self.counters.fault(kind)
                    raise FcError(status, code, message)
            try:
                if v3:
                    self._invoke_v3(handler, path, query, body, request_id)
                else:
                    self._invoke(handler, unquote(path), query, body, request_id)
            except FcError:
                raise
            except ConnectionError:  # the caller went away while we answered
                handler.close_connection = True
                return
            except Exception as exc:  # an emulator bug answers like FC's own internal error, and is logged
                logger.exception("InvokeFunction failed inside the emulator")
                raise FcError(500, "InternalServerError", f"an internal error has occurred: {exc}") from exc
        except FcError as error:
            self.counters.response(error.status, error.code)
            payload = error_body(error.code, error.message, request_id, v3)
            handler.respond(
                error.status, payload, [("Content-Type", "application/json"), ("X-Fc-Request-Id", request_id)]
            )

    def _invoke(self, handler: FcHandler, path: str, query: str, body: bytes, request_id: str) -> None:
        if not path.startswith(f"/{API_VERSION}/"):
            raise FcError(400, "PathNotSupported", f"'{handler.command}' against '{path}' is not supported")
        self._authenticate(handler, path, query)
        match = INVOKE_PATH.match(path)
        if not match or handler.command != "POST":
            raise FcError(400, "PathNotSupported", f"'{handler.command}' against '{path}' is not supported")
        service, _, qualifier = match.group(1).partition(".")
        spec = self._lookup(service, qualifier or LATEST, match.group(2))
        kind = (handler.headers.get("x-fc-invocation-type") or "Sync").capitalize()
        if kind not in ("Sync", "Async"):
            raise FcError(400, "InvalidArgument", f"invalid x-fc-invocation-type '{kind}': expect Sync or Async")
        if kind == "Async":
            self._accept_async(handler, spec, qualifier or LATEST, body, request_id)
        else:
            self._invoke_sync(handler, spec, qualifier or LATEST, body, request_id)

    def _lookup(self, service: str, qualifier: str, function: str) -> FunctionSpec:
        if not any(key[0] == service for key in self.functions):
            raise FcError(404, "ServiceNotFound", f"service '{service}' does not exist")
        if qualifier != LATEST:
            if qualifier.isdigit():
                raise FcError(404, "VersionNotFound", f"version '{qualifier}' of service '{service}' does not exist")
            raise FcError(404, "AliasNotFound", f"alias '{qualifier}' of service '{service}' does not exist")
        spec = self.functions.get((service, function))
        if spec is None:
            raise FcError(404, "FunctionNotFound", f"function '{function}' does not exist in service '{service}'")
        return spec

    def expire_token(self, key_id: str) -> None:
        """From now on the STS token of ``key_id`` is expired (as FC sees a role's token after its expiry)."""
        self._token_expiry[key_id] = time.time()

    def _check_token_expiry(self, key_id: str) -> None:
        expires_at = self._token_expiry.get(key_id)
        if expires_at is not None and expires_at <= time.time():
            raise FcError(403, "InvalidSecurityToken.Expired", "the security token has expired")

    def _authenticate(self, handler: FcHandler, path: str, query: str) -> None:
        headers = handler.headers
        authorization = headers.get("authorization")
        if not authorization:
            raise FcError(400, "MissingRequiredHeader", "required HTTP header Authorization was not specified")
        match = AUTHORIZATION.match(authorization.strip())
        if not match:
            raise FcError(400, "InvalidArgument", "the Authorization header must be 'FC <AccessKeyId>:<Signature>'")
        date = headers.get("date")
        if not date:
            raise FcError(400, "MissingRequiredHeader", "required HTTP header Date was not specified")
        key_id, provided = match.groups()
        if key_id not in self._credentials:
            raise FcError(403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'")
        secret, token = self._credentials[key_id]
        if token and headers.get("x-fc-security-token") != token:
            raise FcError(403, "InvalidSecurityToken", "the security token is missing or not valid for this key")
        self._check_token_expiry(key_id)
        items = [unquote(item) for item in query.split("&")] if query else None
        text = signing.string_to_sign(handler.command, headers.items(), path, items)
        if not signing.matches(secret, text, provided):
            raise FcError(403, "SignatureNotMatch", SIGNATURE_NOT_MATCH)
        self._check_date(date)

    def _check_date(self, date: str) -> None:
        try:
            sent = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise FcError(400, "InvalidArgument", f"invalid Date header '{date}'") from None
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        if self.max_clock_skew and abs((now - sent).total_seconds()) > self.max_clock_skew:
            raise FcError(
                403,
                "RequestTimeTooSkewed",
                f"the difference between the request time '{date}' and the current time "
                f"'{email.utils.format_datetime(now, usegmt=True)}' is too large",
            )

    def _invoke_sync(
        self, handler: FcHandler, spec: FunctionSpec, qualifier: str, body: bytes, rid: str, api: str = API_VERSION
    ) -> None:
        if len(body) > SYNC_PAYLOAD_LIMIT:
            raise FcError(
                400, "EntityTooLarge", f"payload size exceeds maximum allowed size ({SYNC_PAYLOAD_LIMIT} bytes)"
            )
        function = f"{spec.service}/{spec.name}"
        self.counters.add(function, "sync_invocations")
        outcome = self._run(spec, rid, body, qualifier, "Sync", 1, api)
        headers = [("X-Fc-Request-Id", rid), ("X-Fc-Invocation-Duration", str(round(outcome.duration_ms)))]
        if api == API_VERSION:
            headers.append(("X-Fc-Invocation-Service-Version", qualifier))
        if (handler.headers.get("x-fc-log-type") or "").lower() == "tail":
            headers.append(("X-Fc-Log-Result", base64.b64encode(outcome.logs.encode("utf-8")).decode("ascii")))
        if outcome.ok:
            self.counters.response(200)
            handler.respond(200, outcome.body, [("Content-Type", "application/octet-stream"), *headers])
            return
        self.counters.add(function, "sync_errors")
        self.counters.response(200, outcome.error_type)
        payload = json.dumps(outcome.error, ensure_ascii=False).encode("utf-8")
        handler.respond(
            200, payload, [("Content-Type", "application/json"), ("X-Fc-Error-Type", outcome.error_type), *headers]
        )

    def _accept_async(
        self,
        handler: FcHandler,
        spec: FunctionSpec,
        qualifier: str,
        body: bytes,
        rid: str,
        *,
        api: str = API_VERSION,
        function_arn: str | None = None,
        task_id: str | None = None,
    ) -> None:
        if len(body) > ASYNC_PAYLOAD_LIMIT:
            raise FcError(
                400, "EntityTooLarge", f"payload size exceeds maximum allowed size ({ASYNC_PAYLOAD_LIMIT} bytes)"
            )
        delay = _async_delay(handler.headers.get("x-fc-async-delay"))
        if task_id is not None:
            self._claim_task_id(spec, task_id)
        event = AsyncEvent(rid, spec, body, qualifier, api=api, function_arn=function_arn)
        self._dispatcher.submit(event, delay)
        self.counters.add(f"{spec.service}/{spec.name}", "async_accepted")
        self.counters.response(202)
        handler.respond(202, b"", [("X-Fc-Request-Id", rid)])

    # ---- the FC 3.0 API (2023-03-30) -------------------------------------------------------------------

    def _invoke_v3(self, handler: FcHandler, raw_path: str, query: str, body: bytes, request_id: str) -> None:
        self._authenticate_v3(handler, raw_path, query, body)
        match = INVOKE_PATH_3.match(raw_path)
        if not match or handler.command != "POST":
            raise FcError(
                400, "PathNotSupported", f"'{handler.command}' against '{unquote(raw_path)}' is not supported"
            )
        name = unquote(match.group(1))
        qualifier = dict(acs3.split_query(query)).get("qualifier") or LATEST
        spec = self._lookup_v3(name, qualifier)
        kind = (handler.headers.get("x-fc-invocation-type") or "Sync").capitalize()
        if kind not in ("Sync", "Async"):
            raise FcError(400, "InvalidArgument", f"invalid x-fc-invocation-type '{kind}': expect Sync or Async")
        task_id = handler.headers.get("x-fc-async-task-id")
        if task_id is not None and not TASK_ID.match(task_id):
            raise FcError(
                400,
                "InvalidArgument",
                "x-fc-async-task-id must start with a letter or '_' and hold at most 128 letters, digits, '_' or '-'",
            )
        if kind == "Async":
            arn = f"acs:fc:{self.region}:{self.account_id}:functions/{name}"
            self._accept_async(
                handler, spec, qualifier, body, request_id, api=API_VERSION_3, function_arn=arn, task_id=task_id
            )
        else:
            self._invoke_sync(handler, spec, qualifier, body, request_id, api=API_VERSION_3)

    def _lookup_v3(self, name: str, qualifier: str) -> FunctionSpec:
        """``<service>$<function>``, or a plain name that one service defines (module docstring)."""
        service, dollar, function = name.partition("$")
        if dollar:
            spec = self.functions.get((service, function))
        else:
            candidates = [spec for spec in self.functions.values() if spec.name == name]
            if len(candidates) > 1:
                names = ", ".join(sorted(f"{spec.service}${spec.name}" for spec in candidates))
                raise FcError(404, "FunctionNotFound", f"function '{name}' is ambiguous here: name one of {names}")
            spec = candidates[0] if candidates else None
        if spec is None:
            raise FcError(404, "FunctionNotFound", f"function '{name}' does not exist")
        if qualifier != LATEST:
            if qualifier.isdigit():
                raise FcError(404, "VersionNotFound", f"version '{qualifier}' of function '{name}' does not exist")
            raise FcError(404, "AliasNotFound", f"alias '{qualifier}' of function '{name}' does not exist")
        return spec

    def _authenticate_v3(self, handler: FcHandler, raw_path: str, query: str, body: bytes) -> None:
        """V3 (local/acs3.py) in the order of the FC 2.0 checks: key, token, signature, then date and nonce."""
        if not handler.headers.get("authorization"):
            raise FcError(400, "MissingRequiredHeader", "required HTTP header Authorization was not specified")
        try:
            signed = acs3.Acs3Request(handler.command, raw_path, query, handler.headers.items(), body)
            key_id = signed.access_key_id
            if key_id not in self._credentials:
                raise FcError(403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'")
            secret, token = self._credentials[key_id]
            if token and signed.header("x-acs-security-token") != token:
                raise FcError(403, "InvalidSecurityToken", "the security token is missing or not valid for this key")
            self._check_token_expiry(key_id)
            signed.require("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
            signed.check_signed_headers()
            signed.date()
            signed.check_content_hash()
            signed.check_signature(secret)
            signed.check_date(self.max_clock_skew or None)
            self._nonces.check(key_id, signed.headers["x-acs-signature-nonce"])
        except Acs3Problem as problem:
            raise _v3_error(problem, handler.headers.get("x-acs-date", "")) from None

    def _claim_task_id(self, spec: FunctionSpec, task_id: str) -> None:
        with self._task_lock:
            seen = self._task_ids.setdefault(spec.key, set())
            if task_id in seen:
                raise FcError(
                    409, "AsyncTaskAlreadyExists", f"async task '{task_id}' already exists for function '{spec.name}'"
                )
            seen.add(task_id)

    # ---- admin ------------------------------------------------------------------------------------------

    def _admin(self, handler: FcHandler, body: bytes) -> None:
        path, params = split_target(handler.path)
        route = path[len(ADMIN_PREFIX) :].strip("/")
        method = handler.command
        if route == "stats" and method == "GET":
            handler.respond_json(200, self.stats())
        elif route == "faults" and method == "GET":
            handler.respond_json(200, self.faults())
        elif route == "faults" and method == "PUT":
            try:
                self.set_faults(json.loads(body or b"{}"))
            except (ValueError, FaultConfigError) as exc:
                handler.respond_json(400, {"error": str(exc)})
                return
            handler.respond_json(200, self.faults())
        elif route == "faults" and method == "DELETE":
            self.set_faults({})
            handler.respond_json(200, self.faults())
        elif route == "invocations" and method == "GET":
            try:
                limit = int(params.get("limit", "100"))
            except ValueError:
                handler.respond_json(400, {"error": "limit must be an integer"})
                return
            handler.respond_json(200, self.invocations(params.get("function"), params.get("request_id"), limit))
        else:
            handler.respond_json(404, {"error": f"no admin route {method} {path}"})


def _v3_error(problem: Acs3Problem, date: str) -> FcError:
    kind = problem.kind
    if kind == Acs3Problem.MISSING_HEADER:
        return FcError(400, "MissingRequiredHeader", f"required HTTP header {problem.header} was not specified")
    if kind == Acs3Problem.STALE_DATE:
        now = email.utils.format_datetime(datetime.now(timezone.utc), usegmt=True)
        return FcError(
            403,
            "RequestTimeTooSkewed",
            f"the difference between the request time '{date}' and the current time '{now}' is too large",
        )
    if kind == Acs3Problem.SIGNATURE:
        return FcError(403, "SignatureNotMatch", SIGNATURE_NOT_MATCH)
    if kind == Acs3Problem.CONTENT_HASH:
        return FcError(403, "SignatureNotMatch", f"{SIGNATURE_NOT_MATCH} ({problem.detail})")
    if kind == Acs3Problem.NONCE_USED:
        return FcError(403, "SignatureNonceUsed", problem.detail)
    return FcError(400, "InvalidArgument", problem.detail)  # malformed Authorization or date, unsigned headers


def _async_delay(raw: str | None) -> float:
    if raw is None or raw.strip() == "":
        return 0.0
    try:
        delay = float(raw)
    except ValueError:
        delay = -1.0
    if not 0 <= delay < MAX_ASYNC_DELAY_SECONDS:
        raise FcError(400, "InvalidArgument", f"x-fc-async-delay must be in [0, {MAX_ASYNC_DELAY_SECONDS}) seconds")
    return delay
