"""Plain values going into and out of the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.domain.orders import Outcome, Source, Status
from shared.errors import PoisonMessage

# Column sizes (schema.py uses them too): values longer than a key column make the message poison.
OUT_ID_MAX = 128
MESSAGE_ID_MAX = 128
MESSAGE_TYPE_MAX = 64
PHONE_MAX = 32


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (the ledger stores UTC)")
    return value


def _require_key(value: str, name: str, max_length: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise PoisonMessage(f"{name} is missing or empty")
    if len(value) > max_length:
        raise PoisonMessage(f"{name} is longer than {max_length} characters")


@dataclass(frozen=True, kw_only=True)
class ReportToApply:
    """One FlowReport (or a sweep answer shaped like one) to apply to the ledger."""

    message_id: str
    message_type: str
    out_id: str
    phone: str | None
    result: str
    err_code: str | None = None
    err_msg: str | None = None
    raw_body: str | bytes = ""
    dequeue_count: int = 1
    received_at: datetime | None = None  # None: now
    source: Source = Source.RECEIPT

    def __post_init__(self) -> None:
        _require_key(self.message_id, "message_id", MESSAGE_ID_MAX)
        _require_key(self.out_id, "out_id", OUT_ID_MAX)
        if len(self.message_type) > MESSAGE_TYPE_MAX:
            raise PoisonMessage(f"message_type is longer than {MESSAGE_TYPE_MAX} characters")
        if self.phone is not None and len(self.phone) > PHONE_MAX:
            raise PoisonMessage(f"phone is longer than {PHONE_MAX} characters")
        if self.received_at is not None:
            require_aware(self.received_at, "received_at")
        if type(self.source) is not Source:
            object.__setattr__(self, "source", Source(self.source))


@dataclass(frozen=True)
class ApplyResult:
    outcome: Outcome
    status: Status  # the order's status after the call
    event: dict[str, Any] | None = field(default=None, repr=False)  # the outbox event of a real transition

    @property
    def event_id(self) -> str | None:
        return self.event["event_id"] if self.event is not None else None


@dataclass(frozen=True)
class OrderRecord:
    out_id: str
    phone: str | None
    status: Status
    err_code: str | None
    err_msg: str | None
    resolved_by: Source | None
    resolved_message_id: str | None
    submitted_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    registered: bool
    product: str | None = None
    flow_api: str | None = None
    charge_id: str | None = None
    charge_attempts: int = 0
    last_charge_at: datetime | None = None
    last_query_at: datetime | None = None
    last_query_answer: str | None = None
    last_query_note: str | None = None


@dataclass(frozen=True)
class ReceiptRecord:
    message_id: str
    message_type: str
    out_id: str
    result: str
    err_code: str | None
    err_msg: str | None
    raw_body: str
    dequeue_count: int
    received_at: datetime
    outcome: Outcome
    source: Source


@dataclass(frozen=True)
class DeadLetterRecord:
    message_id: str
    message_type: str | None
    raw_body: str
    reason: str
    dequeue_count: int
    first_seen_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class OutboxEvent:
    event_id: str
    out_id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None = None
    rejected_at: datetime | None = None


@dataclass(frozen=True)
class LedgerSummary:
    orders_by_status: dict[str, int]  # every Status, zeros included
    unregistered_orders: int
    receipts_by_outcome: dict[str, int]  # every Outcome, zeros included
    dead_letters: int
    undelivered_events: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": {**self.orders_by_status, "unregistered": self.unregistered_orders},
            "receipts": dict(self.receipts_by_outcome),
            "dead_letters": self.dead_letters,
            "undelivered_events": self.undelivered_events,
        }


@dataclass(frozen=True)
class MigrationResult:
    from_version: int
    to_version: int
    steps: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


@dataclass(frozen=True)
class NewOrder:
    """An order to register: the business's out id and phone, and the product when flow-receipts places it."""

    out_id: str
    phone: str
    product: str | None = None  # Charge's Grade or CreateCdpOrder's OfferId
    flow_api: str | None = None  # charge | cdp
    submitted_at: datetime | None = None  # None: now


@dataclass(frozen=True)
class Registration:
    """What registering a batch of orders did: out ids newly registered, claimed (first seen in a receipt) and
    already registered before."""

    registered: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepState:
    name: str
    holder: str | None
    lease_expires_at: datetime | None
    cycle_id: str | None
    cycle_started_at: datetime | None
    phase: str | None
    cursor_submitted_at: datetime | None
    cursor_out_id: str | None
    counts: dict[str, Any]
    last_finished_at: datetime | None
    updated_at: datetime

    @property
    def cursor(self) -> tuple[datetime, str] | None:
        if self.cursor_submitted_at is None or self.cursor_out_id is None:
            return None
        return self.cursor_submitted_at, self.cursor_out_id
