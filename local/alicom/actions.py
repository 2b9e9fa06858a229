"""The emulated APIs: Dybaseapi 2017-05-25 (queue tokens) and Dycdpapi 2017-05-25 / 2018-06-10 (flow charges),
all served at one endpoint; the Version parameter picks the API."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from local.alicom import errors, shapes
from local.alicom.accounts import MESSAGE_TYPES, Customer, queue_name
from local.alicom.behaviour import Behaviour
from local.alicom.charges import Charge, ChargeBook, OutcomePlanner
from local.alicom.completion import CompletionScheduler
from local.alicom.pop import require
from local.mns import MnsEmulator

PHONE_NUMBER = re.compile(r"^1\d{10}$")
INTEGER = re.compile(r"^-?\d{1,19}$")


@dataclass(frozen=True)
class ApiAction:
    product: str
    version: str
    name: str
    required: tuple[str, ...]


ACTIONS: dict[tuple[str, str], ApiAction] = {
    (action.version, action.name): action
    for action in (
        ApiAction("Dybaseapi", "2017-05-25", "QueryTokenForMnsQueue", ("MessageType",)),
        ApiAction("Dycdpapi", "2017-05-25", "Charge", ("PhoneNumber", "Grade", "OutId")),
        ApiAction("Dycdpapi", "2017-05-25", "QueryChargeDetail", ("OutId",)),
        ApiAction("Dycdpapi", "2018-06-10", "CreateCdpOrder", ("OfferId", "PhoneNumber", "OutOrderId")),
        ApiAction("Dycdpapi", "2018-06-10", "QueryCdpOrder", ("OutOrderId",)),
    )
}
ACTION_NAMES = frozenset(name for _, name in ACTIONS)
VERSIONS = frozenset(version for version, _ in ACTIONS)


def resolve(params: dict[str, str]) -> ApiAction:
    require(params, "Action", "Version")
    if params["Version"] not in VERSIONS:
        raise errors.invalid_version()
    action = ACTIONS.get((params["Version"], params["Action"]))
    if action is None:
        raise errors.action_not_found()
    return action


class AlicomApi:
    def __init__(
        self,
        mns: MnsEmulator,
        book: ChargeBook,
        planner: OutcomePlanner,
        scheduler: CompletionScheduler,
        behaviour: Callable[[], Behaviour],
    ) -> None:
        self._mns = mns
        self._book = book
        self._planner = planner
        self._scheduler = scheduler
        self._behaviour = behaviour
        self._queries_lock = threading.Lock()
        self._queries: Counter[str] = Counter()  # status queries answered, per out id

    def handle(self, action: ApiAction, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        require(params, *action.required)
        return getattr(self, "_" + action.name)(customer, params, request_id)

    def _QueryTokenForMnsQueue(self, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        message_type = params["MessageType"]
        if message_type not in MESSAGE_TYPES:
            return shapes.business_error(
                request_id, shapes.INVALID_PARAMETERS, f"MessageType {message_type} is not an Alicom message type."
            )
        own_queue = queue_name(customer.uid, message_type)
        requested = params.get("QueueName") or own_queue
        if requested != own_queue:
            return shapes.business_error(
                request_id,
                shapes.INVALID_PARAMETERS,
                f"QueueName {requested} is not this account's {message_type} queue.",
            )
        created_at = time.time()
        credential = self._mns.issue_sts(own_queue, self._behaviour().token_ttl_seconds)
        return shapes.message_token(request_id, credential, created_at)

    def _place(self, customer: Customer, out_id: str, phone: str, product: str, api: str) -> tuple[Charge, bool]:
        behaviour = self._behaviour()
        charge, created = self._book.place(
            customer.uid, out_id, phone, product, api, lambda: self._planner.draw(behaviour)
        )
        if created:
            self._scheduler.schedule(customer.uid, out_id, behaviour.charge_delay_seconds)
        return charge, created

    @staticmethod
    def _bad_phone(params: dict[str, str], request_id: str) -> dict | None:
        if PHONE_NUMBER.match(params["PhoneNumber"]):
            return None
        return shapes.business_error(request_id, shapes.MOBILE_NUMBER_ILLEGAL, "The phone number is not valid.")

    def _Charge(self, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        refused = self._bad_phone(params, request_id)
        if refused:
            return refused
        charge, _ = self._place(customer, params["OutId"], params["PhoneNumber"], params["Grade"], "Charge")
        return shapes.charge_accepted(request_id, charge)

    def _CreateCdpOrder(self, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        if not INTEGER.match(params["OfferId"]):
            raise errors.invalid_parameter("OfferId")
        refused = self._bad_phone(params, request_id)
        if refused:
            return refused
        charge, created = self._place(
            customer, params["OutOrderId"], params["PhoneNumber"], params["OfferId"], "CreateCdpOrder"
        )
        return shapes.cdp_order_created(request_id, charge, duplicate=not created)

    def queries(self) -> dict[str, int]:
        """How many status queries were answered for each out id (both APIs)."""
        with self._queries_lock:
            return dict(self._queries)

    def _find_recent(self, customer: Customer, out_id: str) -> Charge | None:
        with self._queries_lock:
            self._queries[out_id] += 1
        charge = self._book.find(customer.uid, out_id)
        return charge if charge is not None and charge.within_query_window(time.time()) else None

    def _QueryChargeDetail(self, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        charge = self._find_recent(customer, params["OutId"])
        if charge is None:
            return shapes.record_not_found(request_id, params["OutId"])
        return shapes.charge_detail(request_id, charge)

    def _QueryCdpOrder(self, customer: Customer, params: dict[str, str], request_id: str) -> dict:
        charge = self._find_recent(customer, params["OutOrderId"])
        if charge is None:
            return shapes.record_not_found(request_id, params["OutOrderId"])
        return shapes.cdp_order(request_id, charge)
