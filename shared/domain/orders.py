"""The order domain: which statuses exist and which reports may move an order. No SQL, no SDK."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shared.errors import PoisonMessage


class Status(str, Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self is not Status.PENDING


TERMINAL_STATUSES = frozenset(status for status in Status if status.is_terminal)


class Outcome(str, Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    ORPHAN = "orphan"


class Source(str, Enum):
    """Who resolved an order (orders.resolved_by) and where a report came from (receipts.source)."""

    RECEIPT = "receipt"  # a FlowReport from the Alicom queue
    SWEEP = "sweep"  # the status query's answer
    EXPIRY = "expiry"  # past the status query's 30-day window
    CHARGE = "charge"  # the flow API refused the top-up outright


# FlowReport "result": a string, "3" = success, "4" = failure (alicom.md §4.1).
_STATUS_BY_RESULT = {"3": Status.SUCCEEDED, "4": Status.FAILED}


def status_for_result(result: str) -> Status:
    """The status a FlowReport result reports; any other value makes the message poison."""
    status = _STATUS_BY_RESULT.get(result) if isinstance(result, str) else None
    if status is None:
        raise PoisonMessage(f"FlowReport result must be '3' (success) or '4' (failure), got {result!r}")
    return status


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    new_status: Status | None = None  # set only when the order really changes (or is created)

    @property
    def changes_order(self) -> bool:
        return self.new_status is not None

    @property
    def event_kind(self) -> str | None:
        """The outbox event kind for a real transition, e.g. "order.succeeded"."""
        return f"order.{self.new_status.value.lower()}" if self.new_status is not None else None


def transition(current: Status | None, reported: Status) -> Decision:
    """What a report of `reported` does to an order now in `current` (None: the order is unknown).

    PENDING moves to any terminal status once; a terminal status never changes: the same status again
    is a duplicate, another one a conflict. An unknown order is an orphan, created with the reported status.
    """
    if not reported.is_terminal:
        raise ValueError(f"a report must carry a terminal status, got {reported.value}")
    if current is None:
        if reported is Status.EXPIRED:
            raise ValueError("only a known order can expire")
        return Decision(Outcome.ORPHAN, reported)
    if current is Status.PENDING:
        return Decision(Outcome.APPLIED, reported)
    if current is reported:
        return Decision(Outcome.DUPLICATE)
    return Decision(Outcome.CONFLICT)
