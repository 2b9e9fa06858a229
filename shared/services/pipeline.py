"""One receipt message: validate -> apply to the ledger (or dead-letter it) -> outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.adapters.ledger import Ledger, ReportToApply
from shared.domain.models import Envelope, FlowReport, decode_body, parse_reports
from shared.domain.orders import Outcome
from shared.errors import PoisonMessage
from shared.logs import logger, mask_phone, message_context

DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class MessageOutcome:
    message_id: str
    outcomes: tuple[str, ...] = ()  # one per report in the body (Outcome values), or ("dead_lettered",)
    reason: str = ""
    out_ids: tuple[str, ...] = field(default=())
    # The outbox events (payloads) its transitions wrote, committed: what to deliver right after the commit.
    events: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def dead_lettered(self) -> bool:
        return self.outcomes == (DEAD_LETTERED,)

    def as_dict(self) -> dict:
        return {"message_id": self.message_id, "outcomes": list(self.outcomes), "reason": self.reason}


def report_message_id(envelope: Envelope, index: int, count: int) -> str:
    """Receipts are unique by message id; a body carrying several reports gives each its own id."""
    return envelope.message_id if count == 1 else f"{envelope.message_id}#{index}"


def _to_apply(envelope: Envelope, report: FlowReport, message_id: str, raw: str | None) -> ReportToApply:
    return ReportToApply(
        message_id=message_id,
        message_type=envelope.message_type,
        out_id=report.out_id,
        phone=report.phone,
        result=report.result,
        err_code=report.err_code or None,
        err_msg=report.err_msg or None,
        raw_body=raw if raw is not None else report.model_dump_json(),
        dequeue_count=envelope.dequeue_count,
    )


def dead_letter(ledger: Ledger, envelope: Envelope, reason: str) -> MessageOutcome:
    """Keeps the body exactly as it came off the queue, with the reason and the dequeue count."""
    ledger.record_dead_letter(envelope.message_id, envelope.message_type, envelope.body, reason, envelope.dequeue_count)
    logger.warning(
        "message dead-lettered",
        extra={"message_id": envelope.message_id, "reason": reason, "dequeue_count": envelope.dequeue_count},
    )
    return MessageOutcome(envelope.message_id, (DEAD_LETTERED,), reason)


def validate(envelope: Envelope) -> list[ReportToApply]:
    """The ledger writes this message would make; PoisonMessage when it can never be a report. A receipt keeps its
    report as Alicom sent it: the body's JSON text (for an array, each report on its own, as JSON)."""
    text = decode_body(envelope.body)
    reports = parse_reports(text)
    if len(reports) == 1:
        return [_to_apply(envelope, reports[0], envelope.message_id, text)]
    return [_to_apply(envelope, r, report_message_id(envelope, i, len(reports)), None) for i, r in enumerate(reports)]


def apply_message(ledger: Ledger, envelope: Envelope) -> MessageOutcome:
    """Applies every report of the message; TransientError propagates so the message is retried."""
    try:
        writes = validate(envelope)
    except PoisonMessage as poison:
        return dead_letter(ledger, envelope, poison.reason)
    outcomes = []
    events = []
    for write in writes:
        result = ledger.apply_report(write)
        outcomes.append(result.outcome.value)
        if result.event is not None:
            events.append(result.event)
        if result.outcome is Outcome.DUPLICATE and logger.isEnabledFor(
            logging.DEBUG
        ):  # a normal receipt: no line at INFO
            logger.debug(
                "receipt not applied",
                extra={
                    "message_id": write.message_id,
                    "out_id": write.out_id,
                    "phone": mask_phone(write.phone),
                    "outcome": result.outcome.value,
                    "status": result.status.value,
                },
            )
    return MessageOutcome(
        envelope.message_id, tuple(outcomes), out_ids=tuple(w.out_id for w in writes), events=tuple(events)
    )


def process_event(ledger: Ledger, event: bytes | str, fallback_id: str) -> MessageOutcome:
    """The processor's work: an Envelope as JSON in, its outcome out. An event that is not an envelope at all
    is dead-lettered under `fallback_id` (raising would only make FC retry what can never succeed)."""
    try:
        envelope = Envelope.model_validate_json(event)
    except ValueError as error:
        text = event.decode("utf-8", "replace") if isinstance(event, bytes) else event
        invalid = Envelope(message_id=fallback_id, message_type="unknown", body=text)
        return dead_letter(ledger, invalid, f"event is not a message envelope: {_envelope_problem(error)}")
    with message_context(envelope.message_id):
        return apply_message(ledger, envelope)


def _envelope_problem(error: ValueError) -> str:
    """The first thing wrong with an event, in one line: ``body: Field required``."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        return f"{where + ': ' if where else ''}{first['msg']}{more}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
