"""Re-drive the processor's failure destination queue (DLQ_QUEUE_NAME) through the processor logic.

Each destination message (shared.domain.destination) carries the processor's original event, an Envelope. It is
applied with ``pipeline.apply_message`` — receipts are unique by message id, so a receipt applied before (a crash
between commit and delete, FC retrying after a commit) comes out as a duplicate and changes nothing. A message that
is not a destination message, or whose event is not an envelope, is dead-lettered in the ledger with the whole
destination message as its raw body. A destination message is deleted only after its effect or its dead letter is
committed. A TransientError from the ledger leaves the rest of the batch in the queue (it comes back after its
visibility timeout) and ends the run; so do a queue that stays unavailable and the deadline. A ConfigError (the
queue is missing, the role may not read or delete it) propagates after the summary line.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from shared.adapters.fc import Credentials
from shared.adapters.ledger import Ledger
from shared.adapters.queue import MAX_BATCH, MnsQueue, Received, TokenRejected, dlq_queue
from shared.domain.destination import envelope_of, parse_destination
from shared.domain.models import Envelope
from shared.errors import ConfigError, PoisonMessage, TransientError
from shared.logs import logger, message_context
from shared.retry import retrying
from shared.services.pipeline import apply_message, dead_letter
from shared.settings import Settings

DEFAULT_MAX_DEQUEUE_COUNT = 5  # MAX_DEQUEUE_COUNT's default
DELETE_RESERVE_SECONDS = 1.0  # no message is started closer than this to the deadline: its delete still has to run
OUTCOMES = ("applied", "duplicate", "conflict", "orphan", "dead_lettered")


@dataclass
class RedriveCounts:
    received: int = 0  # destination messages
    applied: int = 0  # receipts (an envelope whose body is an array carries several)
    duplicate: int = 0
    conflict: int = 0
    orphan: int = 0
    dead_lettered: int = 0  # destination messages (or their envelopes) kept as dead letters
    deleted: int = 0
    delete_failed: int = 0  # committed but still in the queue: re-driven later as duplicates
    left: int = 0  # received but not handled: back in the queue after its visibility timeout
    errors: int = 0
    stopped_by: str = ""  # empty, max_messages, deadline, ledger_unavailable, queue_unavailable, config_error
    seconds: float = 0.0
    error: str = ""  # the error that stopped the run, or the first one

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if not self.error:
            del values["error"]
        return values

    def _stop(self, reason: str, error: BaseException | None = None) -> bool:
        self.stopped_by = reason
        if error is not None:
            self._note(error)
        return False

    def _note(self, error: BaseException) -> None:
        self.errors += 1
        self.error = self.error or " ".join(str(error).split())[:300]


def redrive_queue(settings: Settings, credentials: Credentials) -> MnsQueue:
    """The destination queue of the settings (MNS_ENDPOINT, DLQ_QUEUE_NAME), read with the function's own key."""
    if settings.dlq_queue_name is None or settings.mns_endpoint is None:
        raise ConfigError("DLQ_QUEUE_NAME: not set, so there is no failure destination queue to re-drive")
    return dlq_queue(settings.mns_endpoint, settings.dlq_queue_name, credentials)


def redrive(
    ledger: Ledger,
    queue: MnsQueue,
    deadline: float,
    *,
    max_messages: int | None = None,
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT,
) -> RedriveCounts:
    """Re-drives destination messages until the queue is empty, ``max_messages`` were received, or ``deadline`` (a
    ``time.monotonic()`` value) nears. A message whose re-drive keeps failing with an unexpected error is
    dead-lettered once it has been received ``max_dequeue_count`` times. Logs one summary line."""
    counts = RedriveCounts()
    started = time.monotonic()
    cutoff = deadline - DELETE_RESERVE_SECONDS
    try:
        while _batch(ledger, queue, cutoff, max_messages, max_dequeue_count, counts):
            pass
    except ConfigError as error:
        counts._stop("config_error", error)
        raise
    finally:
        counts.stopped_by = counts.stopped_by or "interrupted"
        counts.seconds = round(time.monotonic() - started, 3)
        logger.info("redrive finished", extra={"queue": queue.queue_name, **counts.as_dict()})
    return counts


def _batch(
    ledger: Ledger,
    queue: MnsQueue,
    cutoff: float,
    max_messages: int | None,
    max_dequeue_count: int,
    counts: RedriveCounts,
) -> bool:
    """One receive, its messages and one batch delete; False when the run ends (``counts.stopped_by`` says why)."""
    wanted = MAX_BATCH if max_messages is None else min(MAX_BATCH, max_messages - counts.received)
    if wanted <= 0:
        return counts._stop("max_messages")
    if time.monotonic() >= cutoff:
        return counts._stop("deadline")
    try:
        batch = retrying(lambda: _receive(queue, wanted, cutoff), cutoff)
    except TransientError as error:
        logger.warning("redrive stopped: the queue is unavailable", extra={"error": str(error)})
        return counts._stop("queue_unavailable", error)
    if not batch:
        return counts._stop("deadline" if time.monotonic() >= cutoff else "empty")
    counts.received += len(batch)
    handled: list[str] = []
    for index, received in enumerate(batch):
        if time.monotonic() >= cutoff:
            counts.left += len(batch) - index
            counts._stop("deadline")
            break
        try:
            outcomes = _redrive_one(ledger, received)
        except TransientError as error:
            counts.left += len(batch) - index
            logger.warning(
                "redrive stopped: the ledger is unavailable",
                extra={
                    "destination_message_id": received.envelope.message_id,
                    "left": len(batch) - index,
                    "error": str(error),
                },
            )
            counts._stop("ledger_unavailable", error)
            break
        except ConfigError:
            raise
        except Exception as error:  # a bug or an unforeseen database error: keep the message, go on with the rest
            counts._note(error)
            message = received.envelope
            if message.dequeue_count < max_dequeue_count:
                counts.left += 1
                logger.exception(
                    "destination message left in the queue", extra={"destination_message_id": message.message_id}
                )
                continue
            reason = f"re-drive gave up after {message.dequeue_count} deliveries; last error: {error}"
            outcomes = _dead_letter(ledger, message, f"fc-destination-{message.message_id}", reason)
        for outcome in outcomes:
            if outcome in OUTCOMES:
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        handled.append(received.receipt_handle)
    _delete(queue, handled, counts)
    return not counts.stopped_by


def _receive(queue: MnsQueue, wanted: int, cutoff: float) -> list[Received]:
    try:
        return queue.receive(wanted, 0, deadline=cutoff)
    except TokenRejected as error:  # the function's own key, rejected twice: nothing fresher to retry with now
        error.retry_helps = False
        raise


def _redrive_one(ledger: Ledger, received: Received) -> tuple[str, ...]:
    message = received.envelope  # the destination message as it came off the queue
    try:
        destination = parse_destination(message.body)
    except PoisonMessage as poison:
        return _dead_letter(ledger, message, f"fc-destination-{message.message_id}", poison.reason)
    try:
        envelope = envelope_of(destination)
    except PoisonMessage as poison:
        # The id the processor dead-letters such an event under (pipeline.process_event), so there is one letter.
        letter_id = f"invalid-event-{destination.request_id}" if destination.request_id else ""
        reason = f"{poison.reason}; {destination.gave_up()}"
        return _dead_letter(ledger, message, letter_id or f"fc-destination-{message.message_id}", reason)
    with message_context(envelope.message_id):
        return apply_message(ledger, envelope).outcomes


def _dead_letter(ledger: Ledger, message: Envelope, letter_id: str, reason: str) -> tuple[str, ...]:
    letter = message.model_copy(update={"message_id": letter_id})  # the raw body: the whole destination message
    with message_context(letter_id):
        return dead_letter(ledger, letter, reason).outcomes


def _delete(queue: MnsQueue, handles: list[str], counts: RedriveCounts) -> None:
    """Deletes what was committed; a failure only means the message is re-driven again, as a duplicate."""
    if not handles:
        return
    try:
        result = queue.delete(handles)
        failed = dict(result.failed)
        if result.retryable:
            again = queue.delete(result.retryable)
            result.deleted.extend(again.deleted)
            failed = {handle: code for handle, code in failed.items() if handle not in again.deleted}
    except ConfigError:
        counts.delete_failed += len(handles)
        raise
    counts.deleted += len(result.deleted)
    counts.delete_failed += len(failed)
    if failed:
        logger.warning(
            "delete failed; destination messages will be re-driven again",
            extra={"handles": len(failed), "codes": sorted(set(failed.values()))},
        )
