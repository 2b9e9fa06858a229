"""Dead letters, replayed after a fix: each goes through the processor's logic again (``apply_message``, with the
envelope rebuilt from the stored raw body, message id and dequeue count).

A dead letter that applies now is marked replayed and never replayed again; receipts are unique by message id, so
even a replay interrupted between applying and marking applies nothing twice. One that is still poison stays a
dead letter (unmarked), reported with the reason it fails now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.adapters.ledger import DeadLetterRecord, Ledger
from shared.domain.models import Envelope
from shared.errors import PoisonMessage
from shared.logs import logger, message_context
from shared.services.pipeline import apply_message, validate

ReplayState = Literal["replayed", "still_poison", "already_replayed", "not_found"]
PAGE = 100
DEFAULT_MESSAGE_TYPE = "FlowReport"


@dataclass(frozen=True)
class Replayed:
    message_id: str
    state: ReplayState
    outcomes: tuple[str, ...] = ()  # of the reports applied (applied, duplicate, conflict, orphan)
    reason: str = ""  # why it is still poison


def replay_dead_letters(
    ledger: Ledger,
    message_ids: Sequence[str] | None = None,
    *,
    on_result: Callable[[Replayed], None] | None = None,
) -> list[Replayed]:
    """Replays these dead letters (None: every one not replayed yet). TransientError stops it (what was replayed
    stays replayed)."""
    results = []
    for result in _given(ledger, message_ids) if message_ids is not None else _unreplayed(ledger):
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def replay_one(ledger: Ledger, record: DeadLetterRecord) -> Replayed:
    if record.replayed_at is not None:
        return Replayed(record.message_id, "already_replayed")
    envelope = Envelope(
        message_id=record.message_id,
        message_type=record.message_type or DEFAULT_MESSAGE_TYPE,
        body=record.raw_body,
        dequeue_count=max(record.dequeue_count, 0),
    )
    try:
        validate(envelope)  # poison again: say why, without recording it a second time
    except PoisonMessage as poison:
        return Replayed(record.message_id, "still_poison", reason=poison.reason)
    with message_context(record.message_id):
        outcome = apply_message(ledger, envelope)
    if outcome.dead_lettered:
        return Replayed(record.message_id, "still_poison", reason=outcome.reason)
    ledger.mark_dead_letter_replayed(record.message_id)
    logger.info("dead letter replayed", extra={"message_id": record.message_id, "outcomes": list(outcome.outcomes)})
    return Replayed(record.message_id, "replayed", outcome.outcomes)


def _given(ledger: Ledger, message_ids: Sequence[str]) -> Iterator[Replayed]:
    for message_id in dict.fromkeys(message_ids):
        record = ledger.get_dead_letter(message_id)
        yield replay_one(ledger, record) if record is not None else Replayed(message_id, "not_found")


def _unreplayed(ledger: Ledger) -> Iterator[Replayed]:
    # Replayed ones leave the unreplayed list, still-poison ones stay in it: ask for those plus a page, until
    # nothing new comes back.
    stuck: set[str] = set()
    while True:
        page = ledger.dead_letters(include_replayed=False, limit=len(stuck) + PAGE)
        new = [record for record in page if record.message_id not in stuck]
        if not new:
            return
        for record in new:
            result = replay_one(ledger, record)
            if result.state != "replayed":
                stuck.add(record.message_id)
            yield result
