"""Charges: one registry of out ids per account (Charge's OutId and CreateCdpOrder's OutOrderId share it), the
outcome each charge will have, and the 30-day window of the status queries."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from local.alicom.behaviour import Behaviour

PROCESSING, SUCCESS, FAILED = "PROCESSING", "SUCCESS", "FAILED"
STATUSES = (PROCESSING, SUCCESS, FAILED)
QUERY_WINDOW_SECONDS = 30 * 86400
# What happens to a charge's FlowReport once it completes.
PENDING, DELIVERED, DROPPED, DUPLICATED, NOT_PUBLISHED = "pending", "delivered", "dropped", "duplicated", "none"
RESULT_SUCCESS, RESULT_FAILURE = "3", "4"


@dataclass(frozen=True)
class Outcome:
    """Drawn when the charge is accepted, applied when it completes."""

    status: str
    err_code: str
    err_msg: str
    report: str  # delivered | dropped | duplicated


@dataclass(frozen=True)
class Charge:
    uid: str
    out_id: str
    charge_id: str
    phone: str
    product: str  # Grade (Charge) or OfferId (CreateCdpOrder)
    api: str  # Charge | CreateCdpOrder
    charged_at: float  # epoch seconds
    status: str = PROCESSING
    err_code: str = ""
    err_msg: str = ""
    finished_at: float | None = None
    report: str = PENDING
    outcome: Outcome | None = None

    @property
    def result(self) -> str:
        """The FlowReport result: "3" success, "4" failure."""
        return RESULT_SUCCESS if self.status == SUCCESS else RESULT_FAILURE

    def within_query_window(self, now: float) -> bool:
        return now - self.charged_at <= QUERY_WINDOW_SECONDS

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("outcome")
        return data


class OutcomePlanner:
    """Draws outcomes from one seeded generator, three draws per charge whatever the rates, so a fixed seed
    and the same sequence of charges give the same outcomes."""

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def draw(self, behaviour: Behaviour) -> Outcome:
        with self._lock:
            succeeds, pick, fate = self._random.random(), self._random.random(), self._random.random()
        if succeeds < behaviour.success_rate:
            status, err_code, err_msg = SUCCESS, "", ""
        else:
            codes = behaviour.failure_codes
            status, (err_code, err_msg) = FAILED, codes[min(int(pick * len(codes)), len(codes) - 1)]
        if fate < behaviour.drop_rate:
            report = DROPPED
        elif fate < behaviour.drop_rate + behaviour.duplicate_rate:
            report = DUPLICATED
        else:
            report = DELIVERED
        return Outcome(status, err_code, err_msg, report)


class DuplicateOutId(Exception):
    pass


class ChargeBook:
    def __init__(self, first_charge_id: int = 100_000_000_001) -> None:
        self._lock = threading.Lock()
        self._charges: dict[tuple[str, str], Charge] = {}
        self._next_id = first_charge_id

    def _new_id(self) -> str:
        charge_id = str(self._next_id)
        self._next_id += 1
        return charge_id

    def place(
        self, uid: str, out_id: str, phone: str, product: str, api: str, draw: Callable[[], Outcome]
    ) -> tuple[Charge, bool]:
        """The charge for (uid, out_id): the existing one (False) or a new one with a freshly drawn outcome (True)."""
        with self._lock:
            existing = self._charges.get((uid, out_id))
            if existing is not None:
                return existing, False
            charge = Charge(uid, out_id, self._new_id(), phone, product, api, time.time(), outcome=draw())
            self._charges[(uid, out_id)] = charge
            return charge, True

    def seed(
        self,
        uid: str,
        out_id: str,
        *,
        phone: str,
        product: str,
        api: str,
        charged_at: float,
        status: str,
        err_code: str = "",
        err_msg: str = "",
    ) -> Charge:
        """A record as if charged at `charged_at`, already in its final (or still processing) state; its report
        is never published."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self._lock:
            if (uid, out_id) in self._charges:
                raise DuplicateOutId(f"out id {out_id!r} is already charged for uid {uid}")
            finished_at = None if status == PROCESSING else charged_at
            charge = Charge(
                uid, out_id, self._new_id(), phone, product, api, charged_at, status, err_code, err_msg,
                finished_at, NOT_PUBLISHED,
            )  # fmt: skip
            self._charges[(uid, out_id)] = charge
            return charge

    def find(self, uid: str, out_id: str) -> Charge | None:
        with self._lock:
            return self._charges.get((uid, out_id))

    def complete(self, uid: str, out_id: str) -> Charge:
        """Applies the drawn outcome; a charge that is no longer processing is returned unchanged."""
        with self._lock:
            charge = self._charges[(uid, out_id)]
            if charge.status != PROCESSING or charge.outcome is None:
                return charge
            outcome = charge.outcome
            charge = replace(
                charge,
                status=outcome.status,
                err_code=outcome.err_code,
                err_msg=outcome.err_msg,
                finished_at=time.time(),
                report=outcome.report,
            )
            self._charges[(uid, out_id)] = charge
            return charge

    def all(self) -> list[Charge]:
        with self._lock:
            return list(self._charges.values())

    def counts_by_status(self) -> dict[str, int]:
        with self._lock:
            counts = Counter(charge.status for charge in self._charges.values())
        return {status: counts.get(status, 0) for status in STATUSES}
