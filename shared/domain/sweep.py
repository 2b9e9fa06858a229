"""What the sweep does with one PENDING order, given the status query's answer. No SQL, no SDK, no clock.

The status query (reference/alicom.md §5) answers for records of the last 30 days. Its answer, once mapped
(shared.adapters.flow_status), is one of four states; this module turns it into one step:

================  ==============================================================================================
SUCCEEDED         apply it like a receipt reporting "3" (resolved_by sweep)
FAILED            apply it like a receipt reporting "4", with the provider's error code
STILL_PENDING     keep the order PENDING (the provider is still working, or its answer was not understood)
NOT_FOUND         the provider has no record of the out id. Believed only ``not_found_after`` after the order's last
                  charge attempt (or its registration): a top-up placed a moment ago may not be queryable yet.
                  Then, by policy: ``resubmit`` places the top-up again (a charge is idempotent per out id, so a call
                  that did reach the provider cannot top up twice) while the order was placed by flow-receipts (its
                  product is known), has been submitted fewer than ``MAX_SUBMISSIONS`` times and is younger than
                  ``resubmit_max_age``; otherwise, and under ``fail``, the order FAILS with err_code NOT_FOUND;
                  ``wait`` keeps it PENDING until it expires.
================  ==============================================================================================

The case this is built for: ``flow-receipts charge`` registers the order, then the process dies before the flow API
call. Receipts never come; the status query says NOT_FOUND; the sweep submits the top-up, and the receipt or the
next sweep settles it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal

QUERY_WINDOW = timedelta(days=30)  # the status query knows records of the last 30 days (alicom.md §4.1)
EXPIRY_REASON = "beyond the status query window"
MAX_SUBMISSIONS = 2  # the original call and one re-submission (or two tries when the original never left)
NOT_FOUND_CODE = "NOT_FOUND"
NotFoundPolicy = Literal["resubmit", "fail", "wait"]


class Answer(str, Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STILL_PENDING = "STILL_PENDING"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class StatusAnswer:
    """The status query's answer for one out id. ``raw`` is the whole answer as the provider sent it."""

    state: Answer
    err_code: str = ""
    err_msg: str = ""
    note: str = ""  # why an answer is STILL_PENDING when that is not the provider's own word (unrecognised, ...)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def result(self) -> str | None:
        """The FlowReport result this answer amounts to: "3", "4", or None when it settles nothing."""
        return {Answer.SUCCEEDED: "3", Answer.FAILED: "4"}.get(self.state)


@dataclass(frozen=True)
class PendingOrder:
    """What the sweep knows about a PENDING order when it decides."""

    out_id: str
    submitted_at: datetime
    last_charge_at: datetime | None = None
    charge_attempts: int = 0
    product: str | None = None  # grade or offer id; None when the business placed the top-up itself


@dataclass(frozen=True)
class NotFoundRule:
    policy: NotFoundPolicy = "resubmit"
    believe_after: timedelta = timedelta(minutes=30)
    resubmit_max_age: timedelta = timedelta(days=1)


class Step(str, Enum):
    APPLY = "apply"  # apply answer.result through the receipt path
    KEEP = "keep"  # leave PENDING, with a note saying why
    RESUBMIT = "resubmit"  # place the top-up again, same out id
    FAIL = "fail"  # FAILED with err_code NOT_FOUND


@dataclass(frozen=True)
class Decision:
    step: Step
    note: str = ""


def is_beyond_window(order: PendingOrder, now: datetime) -> bool:
    return now - order.submitted_at > QUERY_WINDOW


def decide(answer: StatusAnswer, order: PendingOrder, rule: NotFoundRule, now: datetime) -> Decision:
    if answer.state in (Answer.SUCCEEDED, Answer.FAILED):
        return Decision(Step.APPLY)
    if answer.state is Answer.STILL_PENDING:
        return Decision(Step.KEEP, answer.note or "the provider is still processing the top-up")
    last_attempt = order.last_charge_at or order.submitted_at
    if now - last_attempt < rule.believe_after:
        return Decision(Step.KEEP, "not found yet: the top-up was placed too recently to be queryable")
    if rule.policy == "wait":
        return Decision(Step.KEEP, "not found; SWEEP_NOT_FOUND=wait keeps it until it expires")
    if rule.policy == "resubmit":
        why_not = _why_not_resubmit(order, rule, now)
        if why_not is None:
            return Decision(Step.RESUBMIT, "not found: the top-up is submitted again with the same out id")
        return Decision(Step.FAIL, f"the provider has no record of this out id ({why_not})")
    return Decision(Step.FAIL, "the provider has no record of this out id")


def _why_not_resubmit(order: PendingOrder, rule: NotFoundRule, now: datetime) -> str | None:
    if not order.product:
        return "not placed by flow-receipts, so it cannot be re-submitted"
    if order.charge_attempts >= MAX_SUBMISSIONS:
        return f"already submitted {order.charge_attempts} times"
    if now - order.submitted_at > rule.resubmit_max_age:
        return "too old to re-submit"
    return None
