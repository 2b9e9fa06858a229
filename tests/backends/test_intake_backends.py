"""Importing order files on every backend: out ids with SQL metacharacters, CJK, emoji, 128 characters and
case differences are stored and found exactly as written, and importing again registers nothing twice."""

from __future__ import annotations

import io

from shared.adapters.ledger import Ledger
from shared.domain.intake import OUT_ID_MAX
from shared.domain.orders import Status
from shared.services.intake import import_csv

PHONE = "13800138000"
OUT_IDS = [
    "'; DROP TABLE orders; --",
    'quote"back\\slash%percent_under',
    "订单-2024-001",
    "emoji-🚀-4-byte",
    "x" * (OUT_ID_MAX - 1) + "é",
    "Case-1",
    "case-1",
]


def order_file() -> io.StringIO:
    rows = "".join(f'"{out_id.replace(chr(34), chr(34) * 2)}",{PHONE},100M\n' for out_id in OUT_IDS)
    return io.StringIO("out_id,phone,grade\n" + rows + f"{'y' * 200},{PHONE},100M\n")


def test_tricky_out_ids_are_just_data_on_every_backend(ledger: Ledger) -> None:
    first = import_csv(ledger, order_file(), flow_api="charge")
    again = import_csv(ledger, order_file(), flow_api="charge")

    assert (first.registered, first.bad) == (len(OUT_IDS), 1)
    assert first.bad_rows[0].reason == "out_id is 200 characters long; at most 128 are allowed"
    assert (again.registered, again.existing, again.bad) == (0, len(OUT_IDS), 1)
    for out_id in OUT_IDS:
        order = ledger.get_order(out_id)
        assert order is not None and order.out_id == out_id and order.status is Status.PENDING
    assert ledger.summary().orders_by_status["PENDING"] == len(OUT_IDS)
