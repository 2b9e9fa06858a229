"""Queue and message state: visibility, delay, retention, receipt handles, long polling.

All state lives behind one lock; each queue has a condition on that lock so long polls wake as soon as
a message becomes receivable without holding up requests to other queues.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from local.mns import errors
from local.mns.persistence import Journal, NullJournal
from local.mns.wire import IncomingMessage, Property

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
MAX_QUEUE_NAME = 120
MAX_BATCH = 16
MAX_BATCH_PAYLOAD = 65536
MAX_WAIT_SECONDS = 30
ATTRIBUTE_RANGES: dict[str, tuple[int, int, str]] = {
    "DelaySeconds": (0, 604800, "seconds"),
    "MaximumMessageSize": (1024, 65536, "bytes"),
    "MessageRetentionPeriod": (60, 604800, "seconds"),
    "VisibilityTimeout": (1, 43200, "seconds"),
    "PollingWaitSeconds": (0, MAX_WAIT_SECONDS, "seconds"),
}
DEFAULT_ATTRIBUTES: dict[str, int | bool] = {
    "DelaySeconds": 0,
    "MaximumMessageSize": 65536,
    "MessageRetentionPeriod": 345600,
    "VisibilityTimeout": 30,
    "PollingWaitSeconds": 0,
    "LoggingEnabled": False,
}
DEFAULT_PRIORITY = 8


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Message:
    message_id: str
    seq: int
    body: str
    body_md5: str
    priority: int
    enqueue_ms: int
    visible_at_ms: int
    first_dequeue_ms: int = 0
    dequeue_count: int = 0
    generation: int = 0
    group_id: str = ""
    user_properties: list[Property] = field(default_factory=list)
    system_properties: list[Property] = field(default_factory=list)

    def state(self, now: int) -> str:
        if self.visible_at_ms <= now:
            return "active"
        return "inactive" if self.dequeue_count else "delayed"


@dataclass
class Queue:
    name: str
    attributes: dict[str, int | bool]
    create_time: float
    last_modify_time: float
    condition: threading.Condition
    messages: dict[str, Message] = field(default_factory=dict)
    # (priority, seq, message_id, generation) of receivable messages
    ready: list[tuple[int, int, str, int]] = field(default_factory=list)
    # (visible_at_ms, seq, message_id, generation) of delayed and in-flight messages
    pending: list[tuple[int, int, str, int]] = field(default_factory=list)

    def place(self, message: Message, now: int) -> None:
        if message.visible_at_ms <= now:
            heapq.heappush(self.ready, (message.priority, message.seq, message.message_id, message.generation))
        else:
            heapq.heappush(self.pending, (message.visible_at_ms, message.seq, message.message_id, message.generation))

    def _current(self, message_id: str, generation: int) -> Message | None:
        message = self.messages.get(message_id)
        return message if message is not None and message.generation == generation else None

    def _retained(self, message: Message, now: int) -> bool:
        return message.enqueue_ms + int(self.attributes["MessageRetentionPeriod"]) * 1000 > now

    def promote(self, now: int) -> list[str]:
        """Moves messages whose time has come to the ready heap; returns ids dropped by retention."""
        expired = []
        while self.pending and self.pending[0][0] <= now:
            _, _, message_id, generation = heapq.heappop(self.pending)
            message = self._current(message_id, generation)
            if message is None:
                continue
            if not self._retained(message, now):
                del self.messages[message_id]
                expired.append(message_id)
                continue
            self.place(message, now)
        return expired

    def next_change_ms(self) -> int | None:
        return self.pending[0][0] if self.pending else None

    def take(self, count: int, now: int, visibility_ms: int) -> tuple[list[Message], list[str]]:
        expired = self.promote(now)
        taken: list[Message] = []
        while self.ready and len(taken) < count:
            _, _, message_id, generation = heapq.heappop(self.ready)
            message = self._current(message_id, generation)
            if message is None:
                continue
            if not self._retained(message, now):
                del self.messages[message_id]
                expired.append(message_id)
                continue
            message.generation += 1
            message.dequeue_count += 1
            message.first_dequeue_ms = message.first_dequeue_ms or now
            message.visible_at_ms = now + visibility_ms
            self.place(message, now)
            taken.append(message)
        return taken, expired

    def peek(self, count: int, now: int) -> tuple[list[Message], list[str]]:
        expired = self.promote(now)
        visible = []
        for _, _, message_id, generation in sorted(self.ready):
            message = self._current(message_id, generation)
            if message is not None and self._retained(message, now):
                visible.append(message)
                if len(visible) == count:
                    break
        return visible, expired

    def counts(self, now: int) -> dict[str, int]:
        counts = {"active": 0, "inactive": 0, "delayed": 0}
        for message in self.messages.values():
            if self._retained(message, now):
                counts[message.state(now)] += 1
        return counts


class HandleCodec:
    """Receipt handles: `<priority>-<base64url(message_id:generation:mac)>`, never `+` or `/`."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, queue: str, message_id: str, generation: int) -> str:
        text = f"{queue}\n{message_id}\n{generation}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:16]

    def encode(self, queue: str, message: Message) -> str:
        mac = self._mac(queue, message.message_id, message.generation)
        payload = f"{message.message_id}:{message.generation}:{mac}:"
        payload += "0" * ((1 - len(payload)) % 3)  # length 1 mod 3: the handle ends in "==" like real ones
        return f"{message.priority}-" + base64.urlsafe_b64encode(payload.encode()).decode()

    def decode(self, queue: str, handle: str) -> tuple[str, int]:
        prefix, _, encoded = handle.partition("-")
        try:
            if not prefix.isdigit():
                raise ValueError(handle)
            message_id, generation, mac, _ = base64.urlsafe_b64decode(encoded.encode()).decode().split(":")
            number = int(generation)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise errors.receipt_handle_error() from None
        if not hmac.compare_digest(mac, self._mac(queue, message_id, number)):
            raise errors.receipt_handle_error()
        return message_id, number


def _check_range(name: str, value: int) -> None:
    low, high, unit = ATTRIBUTE_RANGES[name]
    if not low <= value <= high:
        raise errors.out_of_range(name, low, high, unit)


def validate_queue_name(name: str) -> None:
    if len(name) > MAX_QUEUE_NAME:
        raise errors.MnsError(400, "QueueNameLengthError", f"The length of queue name should be 1 to {MAX_QUEUE_NAME}.")
    if not QUEUE_NAME.match(name):
        raise errors.MnsError(400, "InvalidQueueName", "The queue name you provided is not valid.")


def validate_attributes(attributes: dict[str, int | bool]) -> None:
    for name, value in attributes.items():
        if name in ATTRIBUTE_RANGES:
            _check_range(name, int(value))


class QueueStore:
    def __init__(self, journal: Journal | None = None) -> None:
        self._lock = threading.Lock()
        self._journal = journal or NullJournal()
        self._queues: dict[str, Queue] = {}
        self._seq = 0
        self._closing = False
        self._handles = HandleCodec(self._journal.secret())
        self._load()

    def _load(self) -> None:
        now = now_ms()
        for name, attributes, created, modified in self._journal.queues():
            self._queues[name] = Queue(name, attributes, created, modified, threading.Condition(self._lock))
        for queue_name, message in self._journal.messages():
            queue = self._queues.get(queue_name)
            if queue is None:
                continue
            queue.messages[message.message_id] = message
            queue.place(message, now)
            self._seq = max(self._seq, message.seq)

    def close(self) -> None:
        with self._lock:  # every use of the journal holds the lock: none is in flight on another thread as it closes
            self._closing = True
            for queue in self._queues.values():
                queue.condition.notify_all()
            self._journal.close()

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise errors.queue_not_exist()
        return queue

    def _forget(self, queue: Queue, message_ids: list[str]) -> None:
        for message_id in message_ids:
            self._journal.delete_message(queue.name, message_id)

    # ---- queues --------------------------------------------------------------------------------------

    def create_queue(self, name: str, requested: dict[str, int | bool]) -> bool:
        """Returns True when created, False when an identical queue already exists."""
        validate_queue_name(name)
        validate_attributes(requested)
        attributes = {**DEFAULT_ATTRIBUTES, **requested}
        with self._lock:
            existing = self._queues.get(name)
            if existing is not None:
                if existing.attributes == attributes:
                    return False
                raise errors.MnsError(409, "QueueAlreadyExist", "The queue you want to create is already exist.")
            created = time.time()
            self._queues[name] = Queue(name, attributes, created, created, threading.Condition(self._lock))
            self._journal.save_queue(name, attributes, created, created)
            self._journal.commit()
            return True

    def set_attributes(self, name: str, changes: dict[str, int | bool]) -> None:
        validate_attributes(changes)
        with self._lock:
            queue = self._queue(name)
            queue.attributes.update(changes)
            queue.last_modify_time = time.time()
            self._journal.save_queue(name, queue.attributes, queue.create_time, queue.last_modify_time)
            self._journal.commit()
            queue.condition.notify_all()

    def get_queue(self, name: str) -> tuple[Queue, dict[str, int]]:
        with self._lock:
            queue = self._queue(name)
            return queue, queue.counts(now_ms())

    def delete_queue(self, name: str) -> None:
        with self._lock:
            queue = self._queues.pop(name, None)
            if queue is None:
                return
            self._journal.delete_queue(name)
            self._journal.commit()
            queue.condition.notify_all()

    def depths(self) -> dict[str, dict[str, int]]:
        with self._lock:
            now = now_ms()
            return {name: queue.counts(now) for name, queue in sorted(self._queues.items())}

    # ---- messages ------------------------------------------------------------------------------------

    def _validated(self, queue: Queue, incoming: IncomingMessage) -> tuple[int, int]:
        if not incoming.body:
            raise errors.invalid_argument("The MessageBody should not be empty.")
        size = len(incoming.body.encode("utf-8"))
        limit = int(queue.attributes["MaximumMessageSize"])
        if size > limit:
            raise errors.invalid_argument(f"The value of MessageBody should between 1 and {limit} bytes (got {size}).")
        delay = queue.attributes["DelaySeconds"] if incoming.delay_seconds is None else incoming.delay_seconds
        _check_range("DelaySeconds", int(delay))
        priority = DEFAULT_PRIORITY if incoming.priority is None else incoming.priority
        if not 1 <= priority <= 16:
            raise errors.out_of_range("Priority", 1, 16, "")
        return int(delay), priority

    def send(self, name: str, batch: list[IncomingMessage]) -> list[Message | errors.MnsError]:
        """Enqueues every valid message; an invalid one yields its error in place."""
        if len(batch) > MAX_BATCH:
            raise errors.invalid_argument(f"The count of messages should between 1 and {MAX_BATCH}.")
        if not batch:
            raise errors.malformed_xml("No Message in the request.")
        if sum(len(m.body.encode("utf-8")) for m in batch) > MAX_BATCH_PAYLOAD and len(batch) > 1:
            raise errors.invalid_argument(f"The total size of a batch should not exceed {MAX_BATCH_PAYLOAD} bytes.")
        with self._lock:
            queue = self._queue(name)
            now = now_ms()
            results: list[Message | errors.MnsError] = []
            for incoming in batch:
                try:
                    delay, priority = self._validated(queue, incoming)
                except errors.MnsError as error:
                    results.append(error)
                    continue
                self._seq += 1
                message = Message(
                    message_id=uuid.uuid4().hex.upper(),
                    seq=self._seq,
                    body=incoming.body,
                    body_md5=hashlib.md5(incoming.body.encode("utf-8")).hexdigest().upper(),
                    priority=priority,
                    enqueue_ms=now,
                    visible_at_ms=now + delay * 1000,
                    group_id=incoming.group_id,
                    user_properties=incoming.user_properties,
                    system_properties=incoming.system_properties,
                )
                queue.messages[message.message_id] = message
                queue.place(message, now)
                self._journal.save_message(name, message)
                results.append(message)
            self._journal.commit()
            queue.condition.notify_all()
            return results

    def receive(self, name: str, count: int, wait_seconds: int | None) -> list[tuple[Message, str]]:
        if not 1 <= count <= MAX_BATCH:
            raise errors.invalid_argument(f"The value of numOfMessages should between 1 and {MAX_BATCH}.")
        if wait_seconds is not None and not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise errors.out_of_range("waitseconds", 0, MAX_WAIT_SECONDS)
        with self._lock:
            queue = self._queue(name)
            wait = queue.attributes["PollingWaitSeconds"] if wait_seconds is None else wait_seconds
            deadline = time.monotonic() + int(wait)
            while True:
                queue = self._queue(name)
                now = now_ms()
                visibility_ms = int(queue.attributes["VisibilityTimeout"]) * 1000
                taken, expired = queue.take(count, now, visibility_ms)
                self._forget(queue, expired)
                for message in taken:
                    self._journal.save_message(name, message)
                self._journal.commit()
                if taken:
                    return [(message, self._handles.encode(name, message)) for message in taken]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    raise errors.message_not_exist()
                change = queue.next_change_ms()
                if change is not None:
                    remaining = min(remaining, max(0.001, (change - now) / 1000))
                queue.condition.wait(remaining)

    def peek(self, name: str, count: int) -> list[Message]:
        if not 1 <= count <= MAX_BATCH:
            raise errors.invalid_argument(f"The value of numOfMessages should between 1 and {MAX_BATCH}.")
        with self._lock:
            queue = self._queue(name)
            visible, expired = queue.peek(count, now_ms())
            self._forget(queue, expired)
            self._journal.commit()
            if not visible:
                raise errors.message_not_exist()
            return visible

    def _held(self, queue: Queue, handle: str, now: int) -> Message:
        """The message a handle still holds: current generation, not yet visible again."""
        message_id, generation = self._handles.decode(queue.name, handle)
        message = queue.messages.get(message_id)
        if message is None or message.generation != generation or message.visible_at_ms <= now:
            raise errors.message_not_exist()
        return message

    def delete(self, name: str, handles: list[str]) -> list[tuple[str, errors.MnsError]]:
        """Deletes what it can; returns the failed handles with their errors."""
        if len(handles) > MAX_BATCH:
            raise errors.invalid_argument(f"The count of receipt handles should between 1 and {MAX_BATCH}.")
        if not handles:
            raise errors.MnsError(400, "MissingReceiptHandle", "The receipt handle should not be empty.")
        with self._lock:
            queue = self._queue(name)
            now = now_ms()
            failures = []
            for handle in handles:
                try:
                    message = self._held(queue, handle, now)
                except errors.MnsError as error:
                    failures.append((handle, error))
                    continue
                del queue.messages[message.message_id]
                self._journal.delete_message(name, message.message_id)
            self._journal.commit()
            return failures

    def change_visibility(self, name: str, handle: str, seconds: int) -> tuple[str, int]:
        if not 0 <= seconds <= ATTRIBUTE_RANGES["VisibilityTimeout"][1]:
            raise errors.out_of_range("VisibilityTimeout", 0, ATTRIBUTE_RANGES["VisibilityTimeout"][1])
        with self._lock:
            queue = self._queue(name)
            now = now_ms()
            message = self._held(queue, handle, now)
            message.generation += 1
            message.visible_at_ms = now + seconds * 1000
            queue.place(message, now)
            self._journal.save_message(name, message)
            self._journal.commit()
            queue.condition.notify_all()
            return self._handles.encode(name, message), message.visible_at_ms
