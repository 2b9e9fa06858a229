"""The seeded plan of a chaos run: which receipts are published, in which segments, and which faults strike when.

Everything random in a run is drawn here from one `random.Random(seed)`, before anything starts, so the same seed
and size give the same receipts, the same segments and the same fault schedule (`Plan.describe()` prints it). What
the real processes then make of it (how far a drainer got when the SIGKILL came, which poller saw a 5xx) depends
on timing and is not reproducible; the invariants must hold whatever it is.

A run is a list of segments. Each segment registers its orders, publishes its reports (as Alicom does, base64
JSON), then drains them with the drainer in the segment's dispatch mode while the segment's episodes fire at given
points of its progress (the share of its messages no longer in the queue). Base faults stay on all the time.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field

PHONE_PREFIXES = "3578"
# Drainer-side MNS operations only: Alicom's own publishing is not what is under test (a retried send whose
# answer was lost would publish a message nobody knows the id of).
DRAINER_OPERATIONS = ("BatchReceiveMessage", "BatchDeleteMessage", "ReceiveMessage", "DeleteMessage")
BASE_MNS_FAULTS = {"internal_error": 0.10, "drop_connection": 0.05}
TOKEN_EXPIRES_EVERY = 100  # MNS requests
TOKEN_TTL_SECONDS = 600
FC_FAULTS = {"internal_error": 0.05, "throttle": 0.05}  # async segments: InvokeFunction
SKEWS = (0, 0, 90, -90, 900, -300)  # seconds Alicom's clock is off (CreateTime and ExpireTime of the token)

EPISODE_KINDS = (
    "kill_drainer",  # SIGKILL at a random point
    "crash_after_commit",  # SIGKILL between the batch's commit and its BatchDelete
    "mns_restart",  # the Alicom MNS emulator stopped and started again on its data directory
    "ledger_outage",  # SQLite locked / server connections killed, for `seconds`
    "throttle_burst",  # MNS answers QpsLimitExceeded to most drainer requests, for `seconds`
    "webhook_down",  # the webhook answers 500, closes connections, or refuses them, for `seconds`
    "fc_instances_killed",  # async: every processor instance SIGKILLed as it runs, for `seconds` (retries, DLQ)
)
WEBHOOK_MODES = ("status_500", "close", "refuse")


@dataclass(frozen=True)
class Episode:
    kind: str
    at: float  # share of the segment's messages drained when it fires (0: at once)
    seconds: float = 0.0
    mode: str = ""

    def describe(self) -> str:
        extra = f" {self.seconds:.1f}s" if self.seconds else ""
        return f"{self.kind}{'/' + self.mode if self.mode else ''}@{self.at:.2f}{extra}"


@dataclass
class Published:
    """One MNS message the plan publishes: a report (out_id, result) or poison (report None)."""

    body: str  # the MNS MessageBody text exactly as stored
    raw: bool  # stored verbatim (poison) rather than base64-encoded by the SDK
    out_id: str | None = None
    result: str | None = None


@dataclass
class Segment:
    number: int
    mode: str  # inline | async
    skew: int
    orders: list[tuple[str, str]] = field(default_factory=list)  # (out_id, phone) registered now
    late_orders: list[tuple[str, str]] = field(default_factory=list)  # registered 2 h ago: the sweep may answer
    old_orders: list[tuple[str, str]] = field(default_factory=list)  # registered 31+ days ago: expire
    charges: dict[str, str] = field(default_factory=dict)  # out_id -> result the status query answers ("3"/"4")
    messages: list[Published] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    sweep_after: bool = False  # run a sweep (killed once, then again) right after draining this segment


@dataclass
class Plan:
    seed: int
    receipts: int
    segments: list[Segment]
    sweep_kill_after: list[float] = field(default_factory=list)  # seconds after it took the lease a sweep dies

    @property
    def messages(self) -> int:
        return sum(len(segment.messages) for segment in self.segments)

    def describe(self) -> list[str]:
        lines = [f"sweeps killed this long after taking the lease (s): {', '.join(map(str, self.sweep_kill_after))}"]
        for s in self.segments:
            episodes = ", ".join(e.describe() for e in s.episodes) or "-"
            lines.append(
                f"segment {s.number:>3} {s.mode:<6} skew {s.skew:+5d}s  {len(s.messages):>6} messages  "
                f"{'sweep after  ' if s.sweep_after else ''}{episodes}"
            )
        return lines


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice(PHONE_PREFIXES)}{rng.randrange(10**9):09d}"


def encode(report: dict) -> str:
    return json.dumps(report, separators=(",", ":"), ensure_ascii=False)


def _report(out_id: str, phone: str, result: str, rng: random.Random) -> Published:
    report = {"phone": phone, "out_id": out_id, "result": result, "err_code": "", "err_msg": ""}
    if result == "4":
        report.update(err_code=rng.choice(["BALANCE_NOT_ENOUGH", "MOBILE_NOT_SUPPORTED"]), err_msg="top-up failed")
    # the SDK base64-encodes the text when it sends; `body` is what MNS stores
    text = encode(report)
    return Published(base64.b64encode(text.encode()).decode("ascii"), False, out_id, result)


def _poison(rng: random.Random, n: int) -> Published:
    choices = [
        f"not a FlowReport #{n}",
        base64.b64encode(b"\xff\xfe garbage %d" % n).decode("ascii"),
        base64.b64encode(f'{{"message":"hello {n}"}}'.encode()).decode("ascii"),
        base64.b64encode(f'{{"phone":"13800138000","out_id":"poison-{n}","result":"9"}}'.encode()).decode(),
    ]
    return Published(rng.choice(choices), True)


def make_plan(seed: int, receipts: int, *, segment_size: int | None = None, async_every: int = 8) -> Plan:
    """About `receipts` published reports (plus poison), in segments of `segment_size` (default: 40 segments,
    at least 500 messages each)."""
    rng = random.Random(seed)
    size = segment_size or max(500, receipts // 40)
    count = max(1, round(receipts / size))
    segments = []
    made = 0
    for number in range(1, count + 1):
        want = receipts - made if number == count else size
        mode = "async" if async_every and number % async_every == async_every // 2 else "inline"
        segment = Segment(number, mode, rng.choice(SKEWS))
        _fill(segment, want, rng)
        made += sum(1 for m in segment.messages if m.out_id is not None)
        segment.episodes = _episodes(segment, rng)
        segment.sweep_after = number % 10 == 5 or number == count
        segments.append(segment)
    kills = [round(rng.uniform(0.0, 0.3), 2) for _ in range(len(segments) + 1)]
    return Plan(seed, receipts, segments, kills)


def _fill(segment: Segment, want: int, rng: random.Random) -> None:
    """`want` reports: most for orders registered now, some duplicated by content (Alicom resends), a few for
    unknown out_ids (orphans), a few contradicting their first report (conflicts), a few for orders registered two
    hours ago whose status query also answers (a receipt racing the sweep); plus orders whose receipt Alicom
    dropped (the sweep answers them), orders past 30 days (they expire), and poison."""
    prefix = f"c{segment.number:03d}"
    messages: list[Published] = []
    n = 0
    while len(messages) < want:
        n += 1
        out_id, phone, result = f"{prefix}-{n:06d}", _phone(rng), rng.choice("3334")
        draw = rng.random()
        if draw < 0.01:  # unknown out id: an orphan
            messages.append(_report(out_id, phone, result, rng))
            continue
        if draw < 0.03:  # registered 2 h ago, receipt published and answered by the status query too
            segment.late_orders.append((out_id, phone))
            segment.charges[out_id] = result
        else:
            segment.orders.append((out_id, phone))
        messages.append(_report(out_id, phone, result, rng))
        again = rng.random()
        if again < 0.05:  # the same report again, another message id
            messages.append(_report(out_id, phone, result, rng))
        elif again < 0.055:  # a contradiction
            messages.append(_report(out_id, phone, "4" if result == "3" else "3", rng))
    for k in range(max(1, want // 100)):  # receipts Alicom dropped: only the status query knows the outcome
        out_id = f"{prefix}-dropped-{k:04d}"
        segment.late_orders.append((out_id, _phone(rng)))
        segment.charges[out_id] = rng.choice("334")
    for k in range(max(1, want // 1000)):
        segment.old_orders.append((f"{prefix}-old-{k:03d}", _phone(rng)))
    for k in range(max(1, want // 300)):
        messages.append(_poison(rng, segment.number * 1000 + k))
    rng.shuffle(messages)
    segment.messages = messages


def _episodes(segment: Segment, rng: random.Random) -> list[Episode]:
    episodes = [
        Episode("kill_drainer", round(rng.uniform(0.05, 0.9), 2)),
        Episode("ledger_outage", round(rng.uniform(0.1, 0.8), 2), round(rng.uniform(1.0, 4.0), 1)),
    ]
    if segment.mode == "inline" and rng.random() < 0.7:  # apply_batch is the drainer's inline path
        episodes.append(Episode("crash_after_commit", round(rng.uniform(0.05, 0.9), 2)))
    if rng.random() < 0.6:
        episodes.append(Episode("throttle_burst", round(rng.uniform(0.0, 0.9), 2), round(rng.uniform(1.0, 3.0), 1)))
    if rng.random() < 0.4:
        episodes.append(Episode("mns_restart", round(rng.uniform(0.1, 0.9), 2), round(rng.uniform(0.2, 1.5), 1)))
    if rng.random() < 0.5:
        episodes.append(
            Episode(
                "webhook_down",
                round(rng.uniform(0.0, 0.9), 2),
                round(rng.uniform(1.0, 5.0), 1),
                rng.choice(WEBHOOK_MODES),
            )
        )
    if segment.mode == "async":  # long enough for FC's two retries to fail too: the on-failure destination
        episodes.append(Episode("fc_instances_killed", round(rng.uniform(0.2, 0.6), 2), 3.0))
    return sorted(episodes, key=lambda e: e.at)
