"""The Alicom API endpoint on the wire (POP RPC, JSON) and the AlicomEmulator facade."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone

from local.alicom import errors, shapes
from local.alicom.accounts import FLOW_REPORT, AccountBook, queue_name
from local.alicom.actions import ACTION_NAMES, AlicomApi, resolve
from local.alicom.admin import ADMIN_PREFIX, serve_admin
from local.alicom.behaviour import Behaviour
from local.alicom.charges import PROCESSING, SUCCESS, ChargeBook, OutcomePlanner
from local.alicom.completion import CompletionScheduler
from local.alicom.pop import Authenticator, parse_request
from local.alicom.reports import QueuePublisher, flow_report_body
from local.faults import FaultPlan
from local.httpd import BackgroundServer, Handler, Server
from local.mns import MnsEmulator
from local.mns.stats import Stats

FAULT_KINDS = ("internal_error", "throttle", "unavailable", "drop_connection", "garbled", "unknown_status")
# The answer of a status query, when "unknown_status" strikes: a value no documented mapping knows.
UNKNOWN_STATUS = "REFUND_PENDING"
STATUS_QUERIES = {"QueryChargeDetail": "ChargeDetail", "QueryCdpOrder": "Data"}
GARBLED_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>Tengine</body></html>"
UNKNOWN_ACTION = "Unknown"


class AlicomHandler(Handler):
    server_name = "Tengine"
    server: AlicomServer

    def do_GET(self) -> None:
        body = self.read_body()
        if self.path.startswith(ADMIN_PREFIX):
            serve_admin(self.server.emulator, self, body)
        else:
            self.server.emulator.serve(self, body)

    do_POST = do_PUT = do_DELETE = do_GET


class AlicomServer(Server):
    emulator: AlicomEmulator


class AlicomEmulator:
    """Dybaseapi (queue tokens) and Dycdpapi (flow charges) as the core SDK reaches them, publishing FlowReports
    into the MNS emulator. See the module docstrings of shapes.py (answers) and errors.py (POP errors)."""

    def __init__(
        self,
        mns: MnsEmulator,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        accounts: Mapping[str, tuple[str, str]] | None = None,
        token_ttl_seconds: float = 600,
        charge_delay_seconds: float = 0.2,
        success_rate: float = 0.9,
        failure_codes: list | None = None,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        seed: int | None = None,
        faults: dict | None = None,
        max_clock_skew: float | None = 900.0,
    ) -> None:
        self.mns = mns
        self.accounts = AccountBook(accounts)
        changes: dict[str, object] = {
            "token_ttl_seconds": token_ttl_seconds,
            "charge_delay_seconds": charge_delay_seconds,
            "success_rate": success_rate,
            "drop_rate": drop_rate,
            "duplicate_rate": duplicate_rate,
            "seed": seed,
        }
        if failure_codes is not None:
            changes["failure_codes"] = failure_codes
        self._behaviour_lock = threading.Lock()
        self._behaviour = Behaviour().updated(changes)
        self.fault_plan = FaultPlan(ACTION_NAMES, FAULT_KINDS, faults)
        self.action_stats = Stats()
        self.book = ChargeBook()
        self.planner = OutcomePlanner(seed)
        self.publisher = QueuePublisher(mns.endpoint, mns.publisher, mns.owner)
        self.scheduler = CompletionScheduler(self.book, self.publisher, queue_name)
        self.api = AlicomApi(mns, self.book, self.planner, self.scheduler, self.behaviour_settings)
        self.authenticator = Authenticator(self.accounts, max_clock_skew)
        self._manual_reports = 0
        self._manual_reports_lock = threading.Lock()
        self._started = False
        server = AlicomServer((host, port), AlicomHandler)
        server.emulator = self
        self._background = BackgroundServer(server)
        self.domain = f"{host}:{self._background.port}"
        self.endpoint = f"http://{self.domain}"
        self.admin_url = self.endpoint + ADMIN_PREFIX

    # ---- lifecycle and Python-side admin ----------------------------------------------------------------

    def start(self) -> AlicomEmulator:
        """Creates the accounts' FlowReport queues in MNS if missing (subscribing created them on the real
        service), then starts serving and completing charges."""
        self.ensure_queues()
        self.scheduler.start()
        self._background.start()
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:  # shutting down a server that never served would wait forever
            self._background.server.server_close()
            return
        self._started = False
        self._background.stop()
        self.scheduler.stop()

    def __enter__(self) -> AlicomEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def default_uid(self) -> str:
        return self.accounts.default_uid

    def queue_name(self, uid: str | None = None, message_type: str = FLOW_REPORT) -> str:
        return queue_name(uid or self.default_uid, message_type)

    def ensure_queues(self) -> None:
        for uid in self.accounts.uids():
            self.publisher.ensure_queue(queue_name(uid))

    def behaviour_settings(self) -> Behaviour:
        with self._behaviour_lock:
            return self._behaviour

    def behaviour(self) -> dict[str, object]:
        return self.behaviour_settings().to_dict()

    def set_behaviour(self, **changes: object) -> dict[str, object]:
        """Applies to charges accepted from now on (an outcome is drawn when its charge is accepted). Setting
        `seed`, even to its current value, restarts the outcome sequence."""
        with self._behaviour_lock:
            self._behaviour = self._behaviour.updated(changes)
            if "seed" in changes:
                self.planner.reseed(self._behaviour.seed)
        return self.behaviour()

    def set_faults(self, config: dict) -> None:
        self.fault_plan.replace(config)

    def faults(self) -> dict:
        return self.fault_plan.to_dict()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self.scheduler.wait_idle(timeout)

    def stats(self) -> dict[str, object]:
        reports = self.scheduler.counters()
        with self._manual_reports_lock:
            reports["manual"] = self._manual_reports
        return {"actions": self.action_stats.snapshot(), "charges": self.book.counts_by_status(), "reports": reports}

    def charge(self, out_id: str, uid: str | None = None) -> dict[str, object] | None:
        charge = self.book.find(uid or self.default_uid, out_id)
        return None if charge is None else charge.to_dict()

    def charges(self) -> list[dict[str, object]]:
        return [charge.to_dict() for charge in self.book.all()]

    def seed_charge(
        self,
        out_id: str,
        *,
        uid: str | None = None,
        charged_at: datetime | float | None = None,
        days_ago: float | None = None,
        status: str = SUCCESS,
        err_code: str = "",
        err_msg: str = "",
        phone: str = "13800000000",
        product: str = "100M",
        api: str = "Charge",
    ) -> dict[str, object]:
        """Records a charge as made at `charged_at` (or `days_ago`), already in `status`; nothing is published.
        The way to get records outside the 30-day window of the status queries."""
        if isinstance(charged_at, datetime):
            when = (charged_at if charged_at.tzinfo else charged_at.replace(tzinfo=timezone.utc)).timestamp()
        elif charged_at is not None:
            when = float(charged_at)
        else:
            when = time.time() - 86400 * (days_ago or 0)
        if status == PROCESSING and (err_code or err_msg):
            raise ValueError("a processing charge has no error code")
        charge = self.book.seed(
            uid or self.default_uid, out_id, phone=phone, product=product, api=api, charged_at=when,
            status=status, err_code=err_code, err_msg=err_msg,
        )  # fmt: skip
        return charge.to_dict()

    def publish_report(
        self,
        out_id: str | None = None,
        phone: str | None = None,
        result: str | None = None,
        err_code: str = "",
        err_msg: str = "",
        *,
        uid: str | None = None,
        raw_body: str | None = None,
    ) -> str:
        """Publishes one FlowReport now, as Alicom would (or `raw_body` as is, for malformed bodies); returns the
        MNS message id. Raises the MNS SDK's exception if MNS refuses it."""
        if raw_body is None:
            if out_id is None or phone is None or result is None:
                raise ValueError("a report needs out_id, phone and result (or raw_body)")
            raw_body = flow_report_body(phone, out_id, result, err_code, err_msg)
        message_id = self.publisher.publish(self.queue_name(uid), raw_body)
        with self._manual_reports_lock:
            self._manual_reports += 1
        return message_id

    # ---- the POP API ------------------------------------------------------------------------------------

    def serve(self, handler: AlicomHandler, body: bytes) -> None:
        request = parse_request(
            handler.command, handler.path, handler.headers.get("Content-Type"), body, handler.headers.items()
        )
        requested_action = request.params.get("Action", "")
        operation = requested_action if requested_action in ACTION_NAMES else UNKNOWN_ACTION
        self.action_stats.request(operation)
        delay = self.fault_plan.latency_seconds(operation)
        if delay:
            time.sleep(delay)
        if self.fault_plan.strikes(operation, "drop_connection"):
            self.action_stats.fault(operation, "drop_connection")
            handler.drop_connection()
            return
        request_id = str(uuid.uuid4()).upper()
        host_id = handler.headers.get("Host") or self.domain
        try:
            if request.method not in ("GET", "POST") or request.path not in ("/", ""):
                raise errors.action_not_found()
            action = resolve(request.params)
            customer = self.authenticator.authenticate(request)
            self._inject_failure(operation)
            status, payload = 200, self.api.handle(action, customer, request.params, request_id)
        except errors.PopError as error:
            status, payload = error.status, shapes.pop_error(request_id, host_id, error.code, error.message)
        except Exception as exc:  # an emulator bug: answer like the gateway would rather than drop the connection
            failure = errors.internal_error()
            message = f"{failure.message} ({type(exc).__name__} in the emulator)"
            status, payload = failure.status, shapes.pop_error(request_id, host_id, failure.code, message)
        if status == 200 and self.fault_plan.strikes(operation, "garbled"):  # e.g. a proxy's error page
            self.action_stats.fault(operation, "garbled")
            self.action_stats.response(operation, status, "garbled")
            handler.respond(status, GARBLED_BODY, [("Content-Type", "text/html"), ("x-acs-request-id", request_id)])
            return
        detail = payload.get(STATUS_QUERIES.get(operation, ""))
        if isinstance(detail, dict) and "Status" in detail and self.fault_plan.strikes(operation, "unknown_status"):
            self.action_stats.fault(operation, "unknown_status")
            detail["Status"] = UNKNOWN_STATUS
        code = payload.get("Code")
        self.action_stats.response(operation, status, None if code == shapes.OK else code)
        answer = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        handler.respond(
            status,
            answer,
            [("Content-Type", "application/json;charset=utf-8"), ("x-acs-request-id", request_id)],
        )

    def _inject_failure(self, operation: str) -> None:
        for kind, error in (
            ("throttle", errors.throttled),
            ("unavailable", errors.service_unavailable),
            ("internal_error", errors.internal_error),
        ):
            if self.fault_plan.strikes(operation, kind):
                self.action_stats.fault(operation, kind)
                raise error()
