"""Orders in: placing a top-up for a registered order, so that a crash at any point never loses it.

``submit_top_up`` is the one way flow-receipts calls the flow API for an order (``flow-receipts charge`` and the
sweep's re-submission both use it): it counts the attempt in the ledger BEFORE the call (a crash after the call still
shows it), then places the top-up with the order's out id (idempotent at the provider), then records what came back:

==============================  =====================================================================================
accepted                        the provider's charge id is kept; receipts and the sweep settle the order
duplicate out id                the provider says the out id was used before: an earlier call may have succeeded, so
                                the order stays PENDING for receipts and the sweep
no answer (timeout, 5xx, ...)   unknown: the order stays PENDING; the sweep asks the status query and, if the provider
                                never heard of it, re-submits (shared.domain.sweep)
definite rejection              FAILED with the provider's code, through the same transition as a receipt
                                (resolved_by charge, one outbox event)
==============================  =====================================================================================
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.adapters.flow import ChargeRejected, FlowApi
from shared.adapters.ledger import Ledger, ReportToApply
from shared.domain.orders import Source
from shared.errors import TransientError
from shared.logs import logger

SubmitState = Literal["placed", "duplicate", "unknown", "rejected", "not_pending"]


@dataclass(frozen=True)
class SubmitOutcome:
    out_id: str
    state: SubmitState
    detail: str = ""  # the provider's code and message, or why the answer is unknown
    event: dict[str, Any] | None = field(default=None, repr=False)  # the outbox event of a rejection


def submit_top_up(ledger: Ledger, flow: FlowApi, out_id: str, phone: str, product: str) -> SubmitOutcome:
    """Places the top-up of a PENDING order. Raises ConfigError (credentials, endpoint) and the ledger's
    TransientError; a flow API that does not answer is an outcome ("unknown"), not an error."""
    if not ledger.start_charge_attempt(out_id):
        return SubmitOutcome(out_id, "not_pending", "the order is not PENDING (or not registered)")
    try:
        placed = flow.place(out_id, phone, product)
    except ChargeRejected as rejected:
        return _reject(ledger, flow, out_id, phone, rejected)
    except TransientError as error:
        logger.warning(
            "top-up answer unknown: the order stays PENDING for its receipt and the sweep",
            extra={"out_id": out_id, "error": str(error)},
        )
        return SubmitOutcome(out_id, "unknown", str(error))
    if placed.charge_id:
        ledger.record_charge_id(out_id, placed.charge_id)
    if placed.duplicate:
        return SubmitOutcome(out_id, "duplicate", "the provider says this out id was used before")
    return SubmitOutcome(out_id, "placed", placed.charge_id)


def _reject(ledger: Ledger, flow: FlowApi, out_id: str, phone: str, rejected: ChargeRejected) -> SubmitOutcome:
    result = ledger.apply_report(
        ReportToApply(
            message_id=f"charge-{uuid.uuid4().hex}",
            message_type=flow.shape.place_action,
            out_id=out_id,
            phone=phone,
            result="4",
            err_code=rejected.code or "REJECTED",
            err_msg=rejected.message,
            raw_body=json.dumps(rejected.raw, ensure_ascii=False, sort_keys=True),
            source=Source.CHARGE,
        )
    )
    logger.warning(
        "top-up rejected: the order is FAILED",
        extra={"out_id": out_id, "code": rejected.code, "outcome": result.outcome.value},
    )
    return SubmitOutcome(out_id, "rejected", f"{rejected.code}: {rejected.message}", result.event)
