"""The invariants a chaos run must end with, checked over plain data (what was published, what the ledger, the
webhook receiver and the queues hold), so that a test can feed the checker a broken ledger and see the diff.

1. every published report is applied exactly once (one receipt under its message id, with its out_id and result)
   or dead-lettered with its raw body; every poison message is a dead letter with its raw body; nothing else;
2. each order changed state once: one receipt (or sweep answer) moved it, its status is that report's result, the
   other reports of it are duplicates (same result) or conflicts (the other one);
3. every order is terminal after the sweep, and the ledger holds exactly the orders the run made;
4. each transition has exactly one outbox event, of the order's final status;
5. every event was delivered at least once (the webhook receiver's record) and is marked delivered;
6. the Alicom queue and the processor's DLQ are empty;
7. no log line holds a secret (AccessKey secret, STS credentials, webhook secret) or an unmasked phone number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

INVARIANTS = {
    "reports": "every published report is applied exactly once or dead-lettered with its raw body",
    "transitions": "each order changes state once, to the result of the report (or answer) that moved it",
    "terminal": "every order is terminal after the sweep",
    "outbox": "each transition has exactly one outbox event",
    "delivered": "every event was delivered at least once (webhook receiver's record)",
    "queues": "the Alicom queue and the DLQ are empty",
    "logs": "no secret and no unmasked phone number in the product's logs",
}
STATUS_BY_RESULT = {"3": "SUCCEEDED", "4": "FAILED"}
MOVERS = ("applied", "orphan")
TERMINAL = ("SUCCEEDED", "FAILED", "EXPIRED")


@dataclass
class Expected:
    reports: dict[str, tuple[str, str]] = field(default_factory=dict)  # message id -> (out_id, result)
    poison: set[str] = field(default_factory=set)  # message ids
    bodies: dict[str, str] = field(default_factory=dict)  # message id -> MNS body text, as published
    registered: set[str] = field(default_factory=set)  # out ids registered (now, 2 h ago, 31+ days ago)
    answered: dict[str, str] = field(default_factory=dict)  # out_id -> result the status query knows
    old: set[str] = field(default_factory=set)  # registered 31+ days ago: expire


@dataclass
class Observed:
    receipts: list[dict[str, Any]]  # message_id, out_id, result, outcome, source
    orders: dict[str, dict[str, Any]]  # out_id -> status, resolved_by, resolved_message_id
    dead_letters: dict[str, str]  # message id -> raw_body
    events: list[dict[str, Any]]  # event_id, out_id, kind, delivered (bool)
    webhook_accepted: set[str]
    queue_depth: int = 0
    dlq_depth: int = 0
    leaks: list[str] = field(default_factory=list)  # what the logs leak (local.chaos.world.secrets_in_log)


@dataclass
class Violation:
    invariant: str  # a key of INVARIANTS
    subject: str  # what it is about: a message id, an out id, an event id, a queue
    expected: str
    found: str

    def lines(self) -> list[str]:
        return [f"  {self.subject}", f"  - expected: {self.expected}", f"  + found:    {self.found}"]


@dataclass
class Verdict:
    violations: list[Violation]
    figures: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_invariant(self) -> dict[str, list[Violation]]:
        grouped: dict[str, list[Violation]] = defaultdict(list)
        for violation in self.violations:
            grouped[violation.invariant].append(violation)
        return grouped

    def report(self, limit: int = 20) -> str:
        """Each invariant HOLDS or is BROKEN; a broken one lists its diffs (expected -, found +)."""
        grouped = self.by_invariant()
        out = []
        for key, title in INVARIANTS.items():
            broken = grouped.get(key, [])
            out.append(
                f"{'BROKEN' if broken else 'holds '}  {title}" + (f" ({len(broken)} violations)" if broken else "")
            )
            for violation in broken[:limit]:
                out.extend(violation.lines())
            if len(broken) > limit:
                out.append(f"  ... and {len(broken) - limit} more")
        return "\n".join(out)


def _describe_receipts(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no receipt"
    return f"{len(rows)} receipt(s): " + ", ".join(
        f"[{r['message_id']} {r['out_id']} result {r['result']} {r['outcome']}]" for r in rows
    )


def check(expected: Expected, observed: Observed) -> Verdict:
    violations: list[Violation] = []
    add = violations.append
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_out_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in observed.receipts:
        by_id[row["message_id"]].append(row)
        by_out_id[row["out_id"]].append(row)
    figures: Counter[str] = Counter()

    # 1. reports and poison
    for message_id, (out_id, result) in expected.reports.items():
        rows = by_id.get(message_id, [])
        letter = observed.dead_letters.get(message_id)
        if len(rows) == 1 and (rows[0]["out_id"], rows[0]["result"]) == (out_id, result) and letter is None:
            figures[f"receipts_{rows[0]['outcome']}"] += 1
            continue
        if not rows and letter is not None and letter == expected.bodies.get(message_id):
            figures["reports_dead_lettered"] += 1
            continue
        add(
            Violation(
                "reports",
                f"message {message_id} (out_id {out_id}, result {result})",
                "1 receipt with that out_id and result, or a dead letter with its raw body",
                _describe_receipts(rows) + ("; dead letter: " + repr(letter[:80]) if letter is not None else ""),
            )
        )
    for message_id in expected.poison:
        letter = observed.dead_letters.get(message_id)
        rows = by_id.get(message_id, [])
        if letter is not None and letter == expected.bodies.get(message_id) and not rows:
            figures["poison_dead_lettered"] += 1
            continue
        add(
            Violation(
                "reports",
                f"poison message {message_id}",
                f"a dead letter with raw body {expected.bodies.get(message_id, '?')[:80]!r} and no receipt",
                ("dead letter " + repr(letter[:80]) if letter is not None else "no dead letter")
                + ("; " + _describe_receipts(rows) if rows else ""),
            )
        )
    published = set(expected.reports) | expected.poison
    for message_id, rows in by_id.items():
        if message_id in published or all(row["source"] == "sweep" for row in rows):
            continue
        add(
            Violation(
                "reports", f"message {message_id}", "nothing recorded (never published)", _describe_receipts(rows)
            )
        )
    for message_id, letter in observed.dead_letters.items():
        if message_id not in published:
            add(Violation("reports", f"message {message_id}", "no dead letter (never published)", repr(letter[:80])))

    # 2. one mover per order, its result the order's status
    truth: dict[str, set[str]] = defaultdict(set)
    for out_id, result in expected.reports.values():
        truth[out_id].add(result)
    for out_id, result in expected.answered.items():
        truth[out_id].add(result)
    for out_id, order in observed.orders.items():
        receipts = by_out_id.get(out_id, [])
        movers = [r for r in receipts if r["outcome"] in MOVERS]
        status = order["status"]
        if status == "EXPIRED" or status == "PENDING":
            if movers:
                add(
                    Violation(
                        "transitions",
                        f"order {out_id}",
                        f"{status} and no receipt that moved it",
                        _describe_receipts(movers),
                    )
                )
            if status == "EXPIRED" and out_id not in expected.old:
                add(Violation("transitions", f"order {out_id}", "not expired (it is younger than 30 days)", status))
            continue
        if len(movers) != 1:
            add(
                Violation(
                    "transitions",
                    f"order {out_id} ({status})",
                    "exactly 1 receipt that moved it",
                    _describe_receipts(movers),
                )
            )
            continue
        (mover,) = movers
        figures[f"resolved_by_{mover['source']}"] += 1
        problems = []
        if STATUS_BY_RESULT.get(mover["result"]) != status:
            problems.append(f"status {status} but the mover reports result {mover['result']}")
        if order.get("resolved_message_id") not in (None, mover["message_id"]):
            problems.append(
                f"resolved_message_id {order['resolved_message_id']} is not the mover {mover['message_id']}"
            )
        if truth.get(out_id) and mover["result"] not in truth[out_id]:
            problems.append(f"result {mover['result']} was never reported for it (reported: {sorted(truth[out_id])})")
        for other in receipts:
            if other is mover:
                continue
            want = "duplicate" if other["result"] == mover["result"] else "conflict"
            if other["outcome"] != want:
                problems.append(f"receipt {other['message_id']} is {other['outcome']}, expected {want}")
        if problems:
            add(
                Violation(
                    "transitions",
                    f"order {out_id}",
                    f"moved once, to {STATUS_BY_RESULT.get(mover['result'])}",
                    "; ".join(problems),
                )
            )
    for out_id, result in expected.answered.items():
        order = observed.orders.get(out_id)
        if order is not None and truth[out_id] == {result} and order["status"] != STATUS_BY_RESULT[result]:
            add(
                Violation(
                    "transitions",
                    f"order {out_id}",
                    f"{STATUS_BY_RESULT[result]} (its status query answer)",
                    order["status"],
                )
            )
    for out_id in expected.old:
        order = observed.orders.get(out_id)
        if order is not None and order["status"] != "EXPIRED":
            add(Violation("transitions", f"order {out_id}", "EXPIRED (31+ days old)", order["status"]))

    # 3. every order terminal; exactly the orders the run made
    made = expected.registered | {out_id for out_id, _ in expected.reports.values()}
    for out_id in sorted(made - set(observed.orders)):
        add(Violation("terminal", f"order {out_id}", "in the ledger, terminal", "missing"))
    for out_id in sorted(set(observed.orders) - made):
        add(
            Violation(
                "terminal",
                f"order {out_id}",
                "no such order (the run never made it)",
                observed.orders[out_id]["status"],
            )
        )
    for out_id, order in observed.orders.items():
        figures[f"orders_{order['status'].lower()}"] += 1
        if order["status"] not in TERMINAL:
            add(Violation("terminal", f"order {out_id}", "SUCCEEDED, FAILED or EXPIRED", order["status"]))

    # 4. one outbox event per transition
    events_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in observed.events:
        events_of[event["out_id"]].append(event)
    for out_id, order in observed.orders.items():
        kinds = [event["kind"] for event in events_of.get(out_id, [])]
        want = [] if order["status"] == "PENDING" else [f"order.{order['status'].lower()}"]
        if kinds != want:
            add(Violation("outbox", f"order {out_id} ({order['status']})", f"events {want}", f"events {kinds}"))
    for out_id in set(events_of) - set(observed.orders):
        add(Violation("outbox", f"out_id {out_id}", "no events (no such order)", str(len(events_of[out_id]))))
    figures["events"] = len(observed.events)

    # 5. delivered at least once
    for event in observed.events:
        seen = event["event_id"] in observed.webhook_accepted
        if not seen or not event["delivered"]:
            add(
                Violation(
                    "delivered",
                    f"event {event['event_id']} ({event['out_id']} {event['kind']})",
                    "accepted by the webhook and marked delivered",
                    f"webhook {'accepted it' if seen else 'never accepted it'}, ledger "
                    f"{'delivered' if event['delivered'] else 'undelivered'}",
                )
            )
    figures["events_accepted_by_webhook"] = len({e["event_id"] for e in observed.events} & observed.webhook_accepted)

    # 6. queues empty
    if observed.queue_depth:
        add(Violation("queues", "the Alicom queue", "0 messages", f"{observed.queue_depth} messages"))
    if observed.dlq_depth:
        add(Violation("queues", "the DLQ", "0 messages", f"{observed.dlq_depth} messages"))
    # 7. logs
    for leak in observed.leaks:
        add(Violation("logs", "the product's logs", "no secret, phone numbers masked", leak))
    return Verdict(violations, dict(figures))


def observe_ledger(url: str) -> tuple[list[dict], dict[str, dict], dict[str, str], list[dict]]:
    """receipts, orders, dead letters and events of a ledger, read with plain SELECTs."""
    from sqlalchemy import select

    from shared.adapters.ledger import Ledger
    from shared.adapters.ledger import schema as s

    with Ledger(url) as ledger, ledger.engine.connect() as conn:
        receipts = [
            dict(row._mapping)
            for row in conn.execute(
                select(
                    s.receipts.c.message_id,
                    s.receipts.c.out_id,
                    s.receipts.c.result,
                    s.receipts.c.outcome,
                    s.receipts.c.source,
                )
            )
        ]
        orders = {
            row.out_id: {
                "status": row.status,
                "resolved_by": row.resolved_by,
                "resolved_message_id": row.resolved_message_id,
            }
            for row in conn.execute(
                select(s.orders.c.out_id, s.orders.c.status, s.orders.c.resolved_by, s.orders.c.resolved_message_id)
            )
        }
        letters = {
            row.message_id: row.raw_body
            for row in conn.execute(select(s.dead_letters.c.message_id, s.dead_letters.c.raw_body))
        }
        events = [
            {
                "event_id": row.event_id,
                "out_id": row.out_id,
                "kind": row.kind,
                "delivered": row.delivered_at is not None,
            }
            for row in conn.execute(
                select(s.outbox.c.event_id, s.outbox.c.out_id, s.outbox.c.kind, s.outbox.c.delivered_at)
            )
        ]
    return receipts, orders, letters, events
