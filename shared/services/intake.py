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

Around it, orders come in (shared.domain.intake has the rules an order and an order file must meet):

- ``register(ledger, out_id, phone, product, flow_api=...)`` — one order, idempotent;
- ``import_csv(ledger, source, flow_api=...)`` — an order file, streamed and registered in chunks (one multi-row
  INSERT each); bad rows are counted and listed with their line number and reason, good rows are kept;
- ``charge(ledger, flow, out_id, phone, product)`` — registers the order, then ``submit_top_up``;
- ``charge_csv(ledger, flow, source, rate_per_second=...)`` — the same for every row of a file, at most
  ``rate_per_second`` top-ups a second, evenly spaced.

A run over a file that cannot go on (the ledger or the credentials fail, the file stops being UTF-8, Ctrl-C) raises
``RunStopped`` with the summary so far; what was registered stays registered, so running the file again resumes.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal, TypeVar

from shared.adapters.flow import ChargeRejected, FlowApi
from shared.adapters.ledger import Ledger, ReportToApply
from shared.adapters.ledger.records import NewOrder, OrderRecord
from shared.domain.intake import (
    PRODUCT_COLUMNS,
    BadHeader,
    CsvLayout,
    CsvUnreadable,
    FlowApiName,
    InvalidOrder,
    OrderLine,
    csv_layout,
    expected_columns,
    is_blank,
    normalise_phone,
    order_line,
)
from shared.domain.orders import Source, Status
from shared.errors import ConfigError, TransientError
from shared.logs import logger
from shared.ratelimit import RateLimiter

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
    if not ledger.start_charge_attempt(out_id, product or None, flow.api):
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


# ---- registering ----------------------------------------------------------------------------------------------

RegisterState = Literal["registered", "claimed", "existing"]
CHUNK_ROWS = 1000  # rows registered per transaction (one multi-row INSERT)
MAX_LISTED = 1000  # bad rows (and rows not placed) listed in a summary; all of them are counted
_SHOWN_OUT_ID = 60
OrderFile = str | os.PathLike[str] | IO[str]  # a path, or an open text stream (newline="")
_T = TypeVar("_T")


class OrderConflict(InvalidOrder):
    """The out id is registered already, with another phone, product or flow API: charging it is refused."""


class RunStopped(Exception):
    """A file run that could not go on; ``summary`` is what it did, ``cause`` why it stopped."""

    def __init__(self, summary: ImportSummary | ChargeSummary, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.summary = summary
        self.cause = cause


@dataclass(frozen=True)
class Registered:
    order: OrderLine
    state: RegisterState  # claimed: first seen in a receipt, registered now


@dataclass(frozen=True)
class BadRow:
    line: int  # the line of the file the row starts on (the header is line 1)
    reason: str
    out_id: str = ""  # as written, shortened


@dataclass
class ImportSummary:
    rows: int = 0  # data rows read (blank lines are not rows)
    registered: int = 0
    claimed: int = 0  # first seen in a receipt, registered now
    existing: int = 0  # registered before, or earlier in the file: left as they were
    bad: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)  # the first MAX_LISTED

    def add_bad(self, row: BadRow) -> None:
        self.bad += 1
        if len(self.bad_rows) < MAX_LISTED:
            self.bad_rows.append(row)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(
    ledger: Ledger, out_id: str, phone: str, product: str | None = None, *, flow_api: FlowApiName
) -> Registered:
    """Registers one order (InvalidOrder when it breaks a rule); an order registered before is left as it is."""
    order = order_line(out_id, phone, product, flow_api)
    done = ledger.register_orders([_new_order(order, flow_api)])
    state: RegisterState = (
        "registered" if done.registered else "claimed" if done.claimed else "existing"  # one order: one list
    )
    return Registered(order, state)


def import_csv(
    ledger: Ledger,
    source: OrderFile,
    *,
    flow_api: FlowApiName,
    product_required: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[ImportSummary], None] | None = None,
) -> ImportSummary:
    """Registers every good row of an order file; BadHeader at once when its header is wrong. Idempotent."""
    summary = ImportSummary()
    with _opened(source) as stream:
        rows = read_orders(stream, flow_api, product_required=product_required)
        try:
            for chunk in _chunks(rows, chunk_rows):
                good = _sort_rows(chunk, summary)
                if good:
                    done = ledger.register_orders([_new_order(order, flow_api) for _, order in good])
                    summary.registered += len(done.registered)
                    summary.claimed += len(done.claimed)
                    summary.existing += len(good) - len(done.registered) - len(done.claimed)
                if progress is not None:
                    progress(summary)
        except (TransientError, CsvUnreadable, KeyboardInterrupt) as error:
            raise RunStopped(summary, error) from error
    logger.info("orders imported", extra=_counts(summary))
    return summary


def count_rows(source: str | os.PathLike[str]) -> int:
    """The data rows of an order file (for a progress bar), read once without keeping them."""
    with open(source, newline="", encoding="utf-8-sig", errors="replace") as stream:
        reader = csv.reader(stream)
        try:
            rows = sum(1 for cells in reader if not is_blank(cells))
        except csv.Error:
            rows = reader.line_num
    return max(rows - 1, 0)


def read_orders(
    stream: IO[str], flow_api: FlowApiName, *, product_required: bool = False
) -> Iterator[tuple[int, OrderLine | BadRow]]:
    """Reads the header now (BadHeader, CsvUnreadable), then yields (line, order or bad row) as it reads on."""
    reader = csv.reader(stream)
    header: list[str] | None = None
    while header is None:
        cells = _next_cells(reader)
        if cells is None:
            columns = expected_columns(flow_api, product_required)
            raise BadHeader(f"the file is empty: it needs a header row naming the columns {columns}")
        if isinstance(cells, list) and not is_blank(cells):
            header = cells
        elif isinstance(cells, csv.Error):
            raise BadHeader(f"the header row is not readable as CSV: {cells}")
    layout = csv_layout(header, flow_api, product_required=product_required)
    return _data_rows(reader, layout)


def _data_rows(reader: Any, layout: CsvLayout) -> Iterator[tuple[int, OrderLine | BadRow]]:
    start = reader.line_num + 1
    while True:
        cells = _next_cells(reader)
        if cells is None:
            return
        line, start = start, reader.line_num + 1
        if isinstance(cells, csv.Error):
            yield line, BadRow(line, f"not readable as CSV: {cells}")
        elif not is_blank(cells):
            try:
                yield line, layout.order(cells)
            except InvalidOrder as invalid:
                out_id = cells[layout.out_id] if len(cells) > layout.out_id else ""
                yield line, BadRow(line, str(invalid), _shown(out_id))


def _next_cells(reader: Any) -> list[str] | csv.Error | None:
    before = reader.line_num
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as error:
        if reader.line_num == before:  # nothing consumed: it would fail the same way forever
            raise CsvUnreadable(f"the file is not readable as CSV after line {before}: {error}") from None
        return error
    except UnicodeDecodeError:
        raise CsvUnreadable(
            f"the file is not UTF-8 text (near line {before + 1}): save it as CSV UTF-8 and import it again"
        ) from None


def _sort_rows(
    chunk: list[tuple[int, OrderLine | BadRow]], summary: ImportSummary | ChargeSummary
) -> list[tuple[int, OrderLine]]:
    good: list[tuple[int, OrderLine]] = []
    for line, item in chunk:
        summary.rows += 1
        if isinstance(item, BadRow):
            summary.add_bad(item)
        else:
            good.append((line, item))
    return good


def _new_order(order: OrderLine, flow_api: FlowApiName) -> NewOrder:
    return NewOrder(order.out_id, order.phone, order.product, flow_api if order.product is not None else None)


@contextmanager
def _opened(source: OrderFile) -> Iterator[IO[str]]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, newline="", encoding="utf-8-sig") as stream:  # a byte order mark is not data
            yield stream
    else:
        yield source


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    chunk: list[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _shown(out_id: str) -> str:
    return out_id if len(out_id) <= _SHOWN_OUT_ID else out_id[:_SHOWN_OUT_ID] + "…"


def _counts(summary: ImportSummary | ChargeSummary) -> dict[str, Any]:
    return {name: value for name, value in asdict(summary).items() if isinstance(value, int)}


# ---- charging -------------------------------------------------------------------------------------------------

CHARGE_CHUNK_ROWS = 100  # registered ahead of their top-ups: a crash leaves at most this many registered, not placed
CHARGE_CONCURRENCY = 4  # top-ups in flight at once, at most (the rate is the limit; this only hides latency)


@dataclass(frozen=True)
class RowOutcome:
    line: int
    out_id: str
    state: SubmitState
    detail: str = ""


@dataclass
class ChargeSummary:
    rows: int = 0
    registered: int = 0  # new in the ledger (or first seen in a receipt)
    existing: int = 0  # registered before this run
    placed: int = 0
    duplicate: int = 0  # the provider says the out id was used before: PENDING, receipts and the sweep settle it
    unknown: int = 0  # no answer (timeout, 5xx, throttled): PENDING, the sweep settles it; running again is safe
    rejected: int = 0  # refused by the provider: FAILED
    already_resolved: int = 0  # not PENDING any more: left alone
    already_placed: int = 0  # PENDING with the provider's charge id from an earlier run: left to its receipt
    bad: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)  # the first MAX_LISTED
    not_placed: list[RowOutcome] = field(default_factory=list)  # the first MAX_LISTED rejected or unknown

    def add_bad(self, row: BadRow) -> None:
        self.bad += 1
        if len(self.bad_rows) < MAX_LISTED:
            self.bad_rows.append(row)

    def add(self, line: int, outcome: SubmitOutcome) -> None:
        if outcome.state == "not_pending":
            self.already_resolved += 1
            return
        setattr(self, outcome.state, getattr(self, outcome.state) + 1)
        if outcome.state in ("rejected", "unknown") and len(self.not_placed) < MAX_LISTED:
            self.not_placed.append(RowOutcome(line, _shown(outcome.out_id), outcome.state, outcome.detail))

    @property
    def done(self) -> int:
        """Rows handled so far (a progress bar's position)."""
        settled = self.placed + self.duplicate + self.unknown + self.rejected
        return settled + self.already_resolved + self.already_placed + self.bad

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def charge(ledger: Ledger, flow: FlowApi, out_id: str, phone: str, product: str | None) -> SubmitOutcome:
    """Registers the order (with its product and flow API), then places its top-up with ``submit_top_up``.

    InvalidOrder for a bad order, OrderConflict when the out id is registered with another phone or product."""
    order = order_line(out_id, phone, product or "", flow.api)
    done = ledger.register_orders([_new_order(order, flow.api)])
    if done.existing:
        _check_same_order(ledger.get_order(order.out_id), order, flow.api)
    return submit_top_up(ledger, flow, order.out_id, order.phone, order.product or "")


def charge_csv(
    ledger: Ledger,
    flow: FlowApi,
    source: OrderFile,
    *,
    rate_per_second: float,
    concurrency: int = CHARGE_CONCURRENCY,
    chunk_rows: int = CHARGE_CHUNK_ROWS,
    progress: Callable[[ChargeSummary], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ChargeSummary:
    """Charges every good row of an order file (header ``out_id,phone`` and the product column FLOW_API takes).

    Each chunk of rows is registered before any of its top-ups is placed; top-ups start at most ``rate_per_second``
    a second, evenly spaced (no burst after a pause), with at most ``concurrency`` in flight. A row whose out id
    appeared earlier in the file is a bad row. An order registered before is left alone when it is resolved or
    already placed (it has the provider's charge id), and charged otherwise (the provider charges an out id once):
    so running a file again after a stop resumes it."""
    summary = ChargeSummary()
    limiter = RateLimiter(rate_per_second, clock=clock, sleep=sleep)
    seen: dict[str, int] = {}  # out id -> its line, for this run
    in_flight: dict[Future[SubmitOutcome], int] = {}
    failure: BaseException | None = None

    def collect(block: bool) -> None:
        nonlocal failure
        if not in_flight:
            return
        finished, _ = wait(list(in_flight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in finished:
            line = in_flight.pop(future)
            try:
                summary.add(line, future.result())
            except (TransientError, ConfigError) as error:
                failure = failure or error
            if progress is not None:
                progress(summary)

    with _opened(source) as stream, ThreadPoolExecutor(concurrency, thread_name_prefix="charge") as pool:
        rows = read_orders(stream, flow.api, product_required=True)
        try:
            for chunk in _chunks(rows, chunk_rows):
                good = _first_sightings(_sort_rows(chunk, summary), seen, summary)
                if not good:
                    _report(progress, summary)
                    continue
                done = ledger.register_orders([_new_order(order, flow.api) for _, order in good])
                summary.registered += len(done.registered) + len(done.claimed)
                summary.existing += len(done.existing)
                existing = set(done.existing)
                for line, order in good:
                    if failure is not None:
                        raise failure
                    if order.out_id in existing and not _still_to_charge(ledger, line, order, flow.api, summary):
                        _report(progress, summary)
                        continue
                    while len(in_flight) >= concurrency:
                        collect(block=True)
                    limiter.wait()
                    in_flight[pool.submit(_submit, ledger, flow, order)] = line
                    collect(block=False)
            while in_flight:
                collect(block=True)
            if failure is not None:
                raise failure
        except (TransientError, ConfigError, CsvUnreadable, KeyboardInterrupt) as error:
            while in_flight:  # top-ups already sent: wait for their answers so the summary counts them
                try:
                    collect(block=True)
                except KeyboardInterrupt:
                    continue
            summary.bad_rows.sort(key=lambda row: row.line)
            raise RunStopped(summary, error) from error
    summary.bad_rows.sort(key=lambda row: row.line)
    logger.info("order file charged", extra={**_counts(summary), "api": flow.api})
    return summary


def _submit(ledger: Ledger, flow: FlowApi, order: OrderLine) -> SubmitOutcome:
    return submit_top_up(ledger, flow, order.out_id, order.phone, order.product or "")


def _report(progress: Callable[[ChargeSummary], None] | None, summary: ChargeSummary) -> None:
    if progress is not None:
        progress(summary)


def _first_sightings(
    good: list[tuple[int, OrderLine]], seen: dict[str, int], summary: ChargeSummary
) -> list[tuple[int, OrderLine]]:
    first: list[tuple[int, OrderLine]] = []
    for line, order in good:
        earlier = seen.setdefault(order.out_id, line)
        if earlier != line:
            reason = f"the out_id repeats line {earlier}: it is charged once"
            summary.add_bad(BadRow(line, reason, _shown(order.out_id)))
        else:
            first.append((line, order))
    return first


def _still_to_charge(ledger: Ledger, line: int, order: OrderLine, api: FlowApiName, summary: ChargeSummary) -> bool:
    """An order registered before this run: True when it is PENDING, not placed yet and the same order; counted
    otherwise."""
    record = ledger.get_order(order.out_id)
    if record is None or record.status is not Status.PENDING:
        summary.already_resolved += 1
        return False
    try:
        _check_same_order(record, order, api)
    except OrderConflict as conflict:
        summary.add_bad(BadRow(line, str(conflict), _shown(order.out_id)))
        return False
    if record.charge_id:
        summary.already_placed += 1
        return False
    return True


def _check_same_order(record: OrderRecord | None, order: OrderLine, api: FlowApiName) -> None:
    if record is None or record.status is not Status.PENDING:
        return  # submit_top_up says so
    problems = []
    if _normalised(record.phone) != order.phone:
        problems.append("another phone number")
    if record.flow_api is not None and record.flow_api != api:
        problems.append(f"FLOW_API={record.flow_api}")
    elif record.product is not None and record.product != order.product:
        problems.append(f"{PRODUCT_COLUMNS[api]} {record.product!r}")
    if problems:
        raise OrderConflict(f"the out_id is registered already, with {' and '.join(problems)}")


def _normalised(phone: str | None) -> str:
    try:
        return normalise_phone(phone or "")
    except InvalidOrder:
        return phone or ""
