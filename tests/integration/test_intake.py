"""Orders in (shared.services.intake): registering one order, importing an order file (bad rows with their line and
reason, a wrong header refused at once, BOM, idempotent, 100k rows streamed), and charging through the real
aliyun-python-sdk-core against the Alicom emulator: the order is registered before the flow API is called, a
duplicate out id or no answer leaves it PENDING, a rejection makes it FAILED with one outbox event."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import CUSTOMER_AK, CUSTOMER_SK, PipelineWorld, pipeline_world

from shared.adapters.alicom import acs_client
from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger, ReportToApply
from shared.domain.intake import BadHeader, CsvUnreadable, InvalidOrder, OrderLine
from shared.domain.orders import Source, Status
from shared.errors import ConfigError
from shared.services.intake import (
    BadRow,
    OrderConflict,
    RunStopped,
    charge,
    charge_csv,
    count_rows,
    import_csv,
    read_orders,
    register,
)

PHONE = "13800138000"
BOM = "\ufeff"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PipelineWorld]:
    with pipeline_world(tmp_path) as started:
        started.alicom.set_behaviour(success_rate=1.0)
        yield started


def flow_api(world: PipelineWorld, api: str = "charge", endpoint: str | None = None, **timeouts: float) -> FlowApi:
    client = acs_client(CUSTOMER_AK, CUSTOMER_SK, None, "cn-hangzhou", **timeouts)  # type: ignore[arg-type]
    return FlowApi(client, endpoint or world.alicom.endpoint, api)  # type: ignore[arg-type]


def calls(world: PipelineWorld, action: str) -> int:
    return world.alicom.stats()["actions"].get(action, {}).get("requests", 0)  # type: ignore[union-attr]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding, newline="")
    return path


# ---- registering -----------------------------------------------------------------------------------------------


def test_register_one_order_is_idempotent(ledger: Ledger) -> None:
    first = register(ledger, " o-1 ", "+86 138-0013-8000", "100M", flow_api="charge")
    again = register(ledger, "o-1", "13900139000", None, flow_api="charge")

    assert (first.state, again.state) == ("registered", "existing")
    order = ledger.get_order("o-1")
    assert (order.status, order.phone, order.product, order.flow_api) == (Status.PENDING, PHONE, "100M", "charge")


def test_register_claims_an_order_first_seen_in_a_receipt(ledger: Ledger) -> None:
    ledger.apply_report(
        ReportToApply(message_id="m-1", message_type="FlowReport", out_id="o-1", phone=PHONE, result="3")
    )

    assert register(ledger, "o-1", PHONE, flow_api="charge").state == "claimed"
    assert ledger.get_order("o-1").registered is True


def test_register_refuses_a_200_character_out_id_clearly(ledger: Ledger) -> None:
    with pytest.raises(InvalidOrder, match="out_id is 200 characters long; at most 128 are allowed"):
        register(ledger, "x" * 200, PHONE, flow_api="charge")
    assert ledger.summary().orders_by_status["PENDING"] == 0


# ---- importing -------------------------------------------------------------------------------------------------

MIXED = (
    f"{BOM}Phone , OUT_ID,grade\r\n"  # a BOM, columns in another order, names in any case, CRLF
    "138 0013 8000,o-1,100M\r\n"
    "\r\n"  # blank lines are not rows
    '+8613900139000,"o-2, with a comma",1G\r\n'
    "12345,o-3,100M\r\n"  # line 5: not a mobile number
    ",o-4,100M\r\n"  # line 6: no phone
    "13800138000,,100M\r\n"  # line 7: no out id
    f"13800138000,{'x' * 200},100M\r\n"  # line 8: too long
    "13800138000,o-5\r\n"  # line 9: a field short
    '13800138000,"o-6\nsecond line",100M\r\n'  # lines 10-11: a line break inside an out id
    "13800138000,'; DROP TABLE orders; --,100M\r\n"  # line 12: just data
    "13800138000,订单-🚀-001,100M\r\n"  # line 13: just data
    "13800138000,o-7,\r\n"  # line 14: no grade, though the file has the column
    "13800138000,o-8,100M\r\n"  # line 15
)


def test_import_keeps_good_rows_and_reports_bad_ones_with_line_and_reason(ledger: Ledger, tmp_path: Path) -> None:
    summary = import_csv(ledger, write(tmp_path / "orders.csv", MIXED), flow_api="charge")

    assert (summary.rows, summary.registered, summary.existing, summary.bad) == (12, 5, 0, 7)
    assert [(row.line, row.out_id, row.reason.split(" (")[0].split(":")[0]) for row in summary.bad_rows] == [
        (5, "o-3", "phone is not a mainland China mobile number"),
        (6, "o-4", "phone is empty"),
        (7, "", "out_id is empty"),
        (8, "x" * 60 + "…", "out_id is 200 characters long; at most 128 are allowed"),
        (9, "o-5", "the row has 2 fields; the header has 3"),
        (10, "o-6\nsecond line", "out_id contains a control character"),
        (14, "o-7", "grade is empty"),
    ]
    for out_id, phone, grade in [
        ("o-1", PHONE, "100M"),
        ("o-2, with a comma", "13900139000", "1G"),
        ("'; DROP TABLE orders; --", PHONE, "100M"),
    ]:
        order = ledger.get_order(out_id)
        assert (order.status, order.phone, order.product, order.flow_api) == (Status.PENDING, phone, grade, "charge")
    assert ledger.get_order("订单-🚀-001") is not None and ledger.get_order("o-8") is not None
    assert ledger.summary().orders_by_status["PENDING"] == 5


def test_importing_again_registers_nothing_new_and_counts_the_rest(ledger: Ledger, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", MIXED)
    first = import_csv(ledger, path, flow_api="charge")

    again = import_csv(ledger, path, flow_api="charge")

    assert (again.rows, again.registered, again.existing, again.bad) == (12, 0, 5, 7)
    assert again.bad_rows == first.bad_rows
    assert ledger.summary().orders_by_status["PENDING"] == 5


def test_a_row_repeated_in_the_file_is_registered_once(ledger: Ledger, tmp_path: Path) -> None:
    text = "out_id,phone\n" + "".join(f"o-{n % 3},{PHONE}\n" for n in range(7))

    summary = import_csv(ledger, write(tmp_path / "orders.csv", text), flow_api="charge", chunk_rows=4)

    assert (summary.rows, summary.registered, summary.existing, summary.bad) == (7, 3, 4, 0)


def test_a_file_without_the_product_column_registers_orders_without_one(ledger: Ledger) -> None:
    summary = import_csv(ledger, io.StringIO(f"out_id,phone\no-1,{PHONE}\n"), flow_api="cdp")

    assert summary.registered == 1
    order = ledger.get_order("o-1")
    assert (order.product, order.flow_api) == (None, None)


@pytest.mark.parametrize("text", ["", "\n\n", BOM, " , \n"])
def test_an_empty_file_is_refused(ledger: Ledger, tmp_path: Path, text: str) -> None:
    with pytest.raises(BadHeader, match=r"the file is empty: it needs a header row naming the columns out_id,phone\["):
        import_csv(ledger, write(tmp_path / "orders.csv", text), flow_api="charge")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{PHONE},o-1\n", "the header row must name the columns out_id,phone[,grade] (any order, names case-"),
        ("out_id,phone,offer_id\n", "offer_id is the product of FLOW_API=cdp; FLOW_API is charge (use grade)"),
        ("out_id,phone,remark\n", "unknown column remark"),
    ],
)
def test_a_wrong_header_is_refused_at_once(ledger: Ledger, tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "orders.csv", text + f"o-9,{PHONE}\n" * 3)

    with pytest.raises(BadHeader) as raised:
        import_csv(ledger, path, flow_api="charge")

    assert message in str(raised.value)
    assert ledger.summary().orders_by_status["PENDING"] == 0


def test_a_file_that_stops_being_utf8_stops_the_import_with_what_was_done(ledger: Ledger, tmp_path: Path) -> None:
    good = "out_id,phone\n" + "".join(f"order-{n:05d},{PHONE}\n" for n in range(1000))
    path = tmp_path / "orders.csv"
    path.write_bytes(good.encode() + "订单-gbk,13800138000\n".encode("gbk"))

    with pytest.raises(RunStopped) as raised:
        import_csv(ledger, path, flow_api="charge", chunk_rows=100)

    assert isinstance(raised.value.cause, CsvUnreadable)
    assert "the file is not UTF-8 text (near line" in str(raised.value.cause)
    assert raised.value.summary.registered == ledger.summary().orders_by_status["PENDING"] > 0


class CountingStream(io.TextIOBase):
    """A file read through this shows how much of it was read at any moment."""

    def __init__(self, path: Path) -> None:
        self._file = path.open(newline="", encoding="utf-8-sig")
        self.chars_read = 0

    def readline(self, size: int = -1) -> str:  # type: ignore[override]
        line = self._file.readline(size)
        self.chars_read += len(line)
        return line

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        self._file.close()


def test_100k_rows_are_registered_in_one_streamed_pass(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as out:
        out.write("out_id,phone,grade\n")
        out.writelines(f"big-{n:06d},139{n:08d},100M\n" for n in range(100_000))
    size = path.stat().st_size
    stream = CountingStream(path)
    read_at_each_chunk: list[int] = []

    summary = import_csv(
        ledger, stream, flow_api="charge", progress=lambda _: read_at_each_chunk.append(stream.chars_read)
    )
    stream.close()

    assert (summary.rows, summary.registered, summary.bad) == (100_000, 100_000, 0)
    assert ledger.summary().orders_by_status["PENDING"] == 100_000
    assert len(read_at_each_chunk) == 100  # one transaction per 1000 rows
    assert read_at_each_chunk[0] < size / 50  # streamed: the first chunk was registered after ~1% of the file
    assert read_at_each_chunk[-1] == stream.chars_read == size
    assert count_rows(path) == 100_000


def test_read_orders_yields_lines_as_they_are_in_the_file() -> None:
    rows = list(read_orders(io.StringIO(f'out_id,phone\n\no-1,{PHONE}\n"o\n2",{PHONE}\no-3,1\n'), "charge"))

    assert rows == [
        (3, OrderLine("o-1", PHONE)),
        (4, BadRow(4, "out_id contains a control character (a tab, a line break, NUL...)", "o\n2")),
        (6, BadRow(6, rows[2][1].reason, "o-3")),  # type: ignore[union-attr]
    ]


# ---- charging one order ----------------------------------------------------------------------------------------


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_order_is_registered_before_the_flow_api_is_called(world: PipelineWorld) -> None:
    unreachable = flow_api(world, endpoint=closed_port(), connect_timeout=1)

    outcome = charge(world.ledger, unreachable, "o-1", PHONE, "100M")

    assert outcome.state == "unknown" and "got no answer" in outcome.detail
    order = world.ledger.get_order("o-1")
    assert (order.status, order.registered, order.product, order.flow_api) == (Status.PENDING, True, "100M", "charge")
    assert order.charge_attempts == 1 and order.last_charge_at is not None


def test_a_placed_top_up_is_settled_by_its_receipt(world: PipelineWorld) -> None:
    outcome = charge(world.ledger, flow_api(world), "o-1", "+86 138 0013 8000", "100M")

    assert outcome.state == "placed"
    assert world.ledger.get_order("o-1").charge_id == outcome.detail == world.alicom.charge("o-1")["charge_id"]
    assert world.alicom.wait_idle(5)
    world.drain_until_empty()
    assert world.ledger.get_order("o-1").status is Status.SUCCEEDED
    assert world.alicom.charge("o-1")["phone"] == PHONE  # the normalised number went to the provider


def test_a_duplicate_out_id_leaves_the_order_pending(world: PipelineWorld) -> None:
    flow = flow_api(world, "cdp")
    flow.place("o-1", PHONE, "1001")  # placed before, by a call the ledger never heard back from

    outcome = charge(world.ledger, flow, "o-1", PHONE, "1001")

    assert outcome.state == "duplicate"
    order = world.ledger.get_order("o-1")
    assert (order.status, order.charge_id) == (Status.PENDING, world.alicom.charge("o-1")["charge_id"])
    assert world.ledger.outbox_events("o-1") == []


def test_a_timeout_leaves_the_order_pending_and_charging_again_places_it_once(world: PipelineWorld) -> None:
    world.alicom.set_faults({"operations": {"Charge": {"latency_ms": 1500}}})
    impatient = flow_api(world, read_timeout=0.3)

    outcome = charge(world.ledger, impatient, "o-1", PHONE, "100M")

    assert outcome.state == "unknown" and "got no answer" in outcome.detail
    assert world.ledger.get_order("o-1").status is Status.PENDING
    world.alicom.set_faults({})
    again = charge(world.ledger, flow_api(world), "o-1", PHONE, "100M")
    assert again.state == "placed"
    assert world.ledger.get_order("o-1").charge_attempts == 2
    assert sum(world.alicom.stats()["charges"].values()) == 1  # the slow call was placed: the second is a repeat


def test_a_rejection_makes_the_order_failed_with_one_outbox_event(world: PipelineWorld) -> None:
    outcome = charge(world.ledger, flow_api(world, "cdp"), "o-1", PHONE, "9" * 25)  # no such offer

    assert outcome.state == "rejected"
    order = world.ledger.get_order("o-1")
    assert (order.status, order.resolved_by, order.err_code) == (Status.FAILED, Source.CHARGE, "InvalidOfferId")
    (event,) = world.ledger.outbox_events("o-1")
    assert event.kind == "order.failed" and event.payload["status"] == "FAILED"
    assert charge(world.ledger, flow_api(world, "cdp"), "o-1", PHONE, "9" * 25).state == "not_pending"
    assert len(world.ledger.outbox_events("o-1")) == 1


def test_charging_an_out_id_registered_with_another_phone_is_refused_before_any_call(world: PipelineWorld) -> None:
    register(world.ledger, "o-1", "13900139000", "100M", flow_api="charge")

    with pytest.raises(OrderConflict, match="registered already, with another phone number"):
        charge(world.ledger, flow_api(world), "o-1", PHONE, "100M")
    with pytest.raises(OrderConflict, match="with grade '100M'"):
        charge(world.ledger, flow_api(world), "o-1", "13900139000", "1G")
    with pytest.raises(InvalidOrder, match="grade is empty"):
        charge(world.ledger, flow_api(world), "o-2", PHONE, None)
    assert calls(world, "Charge") == 0


# ---- charging a file -------------------------------------------------------------------------------------------


def test_charge_csv_registers_places_and_counts_every_row(world: PipelineWorld, tmp_path: Path) -> None:
    register(world.ledger, "known-other-phone", "13900139000", "100M", flow_api="charge")
    register(world.ledger, "known-pending", PHONE, "100M", flow_api="charge")
    assert charge(world.ledger, flow_api(world), "known-placed", PHONE, "100M").state == "placed"
    world.ledger.apply_report(
        ReportToApply(message_id="m-1", message_type="FlowReport", out_id="done-1", phone=PHONE, result="3")
    )
    rows = [f"c-{n},{PHONE},100M" for n in range(8)]
    rows += ["c-0,13800138000,100M", "bad,123,100M", f"known-other-phone,{PHONE},100M"]
    rows += [f"known-pending,{PHONE},100M", f"done-1,{PHONE},100M", f"known-placed,{PHONE},100M"]
    path = write(tmp_path / "charge.csv", "out_id,phone,grade\n" + "\n".join(rows) + "\n")
    seen: list[int] = []

    summary = charge_csv(
        world.ledger, flow_api(world), path, rate_per_second=500, chunk_rows=5, progress=lambda s: seen.append(s.done)
    )

    assert (summary.rows, summary.placed, summary.already_resolved, summary.already_placed) == (14, 9, 1, 1)
    assert (summary.registered, summary.existing, summary.bad) == (9, 3, 3)
    assert (summary.unknown, summary.rejected, summary.duplicate) == (0, 0, 0)
    assert [(row.line, row.reason) for row in summary.bad_rows] == [
        (10, "the out_id repeats line 2: it is charged once"),
        (11, summary.bad_rows[1].reason),
        (12, "the out_id is registered already, with another phone number"),
    ]
    assert seen[-1] == summary.done == 14 and seen == sorted(seen)
    assert world.ledger.get_order("c-7").charge_id == world.alicom.charge("c-7")["charge_id"]
    assert calls(world, "Charge") == 10

    assert world.alicom.wait_idle(5)
    world.drain_until_empty()
    again = charge_csv(world.ledger, flow_api(world), path, rate_per_second=500)
    assert (again.placed, again.already_resolved, again.bad) == (0, 11, 3)
    assert calls(world, "Charge") == 10


def test_charge_csv_starts_top_ups_evenly_spaced_at_the_rate(world: PipelineWorld, tmp_path: Path) -> None:
    path = write(tmp_path / "charge.csv", "out_id,phone,grade\n" + "".join(f"p-{n},{PHONE},1G\n" for n in range(6)))
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    summary = charge_csv(
        world.ledger, flow_api(world), path, rate_per_second=4, concurrency=3, clock=lambda: now[0], sleep=sleep
    )

    assert summary.placed == 6
    assert slept == [0.25] * 5  # six starts, a quarter second apart: never two at once


def test_charge_csv_keeps_going_past_unanswered_top_ups(world: PipelineWorld, tmp_path: Path) -> None:
    world.alicom.set_faults({"seed": 3, "operations": {"Charge": {"unavailable": 0.5}}})
    path = write(tmp_path / "charge.csv", "out_id,phone,grade\n" + "".join(f"u-{n},{PHONE},1G\n" for n in range(20)))

    summary = charge_csv(world.ledger, flow_api(world), path, rate_per_second=1000)

    assert summary.placed + summary.unknown == 20 and summary.unknown > 0
    assert [row.state for row in summary.not_placed] == ["unknown"] * summary.unknown
    pending = world.ledger.unresolved_orders(100)
    assert len(pending) == 20 and all(order.charge_attempts == 1 for order in pending)


def test_charge_csv_stops_on_bad_credentials_with_what_it_did(world: PipelineWorld, tmp_path: Path) -> None:
    path = write(tmp_path / "charge.csv", "out_id,phone,grade\n" + "".join(f"k-{n},{PHONE},1G\n" for n in range(5)))
    wrong = FlowApi(acs_client(CUSTOMER_AK, "not-the-secret", None, "cn-hangzhou"), world.alicom.endpoint, "charge")

    with pytest.raises(RunStopped) as raised:
        charge_csv(world.ledger, wrong, path, rate_per_second=1000, concurrency=1)

    assert isinstance(raised.value.cause, ConfigError)
    assert raised.value.summary.placed == 0
    assert world.ledger.summary().orders_by_status["PENDING"] == 5  # registered: running again resumes


def test_charge_csv_needs_the_product_column(world: PipelineWorld, tmp_path: Path) -> None:
    path = write(tmp_path / "charge.csv", f"out_id,phone\no-1,{PHONE}\n")

    with pytest.raises(BadHeader, match=r"must name the columns out_id,phone,offer_id .*missing offer_id"):
        charge_csv(world.ledger, flow_api(world, "cdp"), path, rate_per_second=10)
    assert calls(world, "CreateCdpOrder") == 0
