"""The sweep's inputs and outputs on generated data: order files (CSV) registered by ``import_csv``, status-query
answers (the emulator's shapes, damaged, or garbage) acted on by a real ``Sweeper`` against a SQLite ledger, and the
report CSV it writes.

The flow API is the real ``FlowApi`` (its parsing and ANSWER_MAP are what is under test) with its RPC caller answering
from a table instead of the network; a transient answer (throttled, 5xx, unreadable) is given on the first attempt
only, the sweep's retry then hears "PROCESSING", and the retry's pauses are skipped.

Properties: an order file is imported or refused with the documented errors, and its counts add up; the sweep finishes;
it closes an order only on an answer that says so plainly (Code OK, a known status) and exactly once (one outbox
event), keeps every other order PENDING with the answer noted, counts each order once, and its report CSV reads back
to exactly the orders still open."""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import io
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fuzz_strategies import OUT_ID_POOL, fresh_id, order_files, query_answers
from fuzz_support import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

import shared.services.sweep as sweep_module
from shared.adapters.alicom import AlicomRefused, PopCaller, UnreadableAnswer
from shared.adapters.flow import ANSWER_MAP, ANSWER_SHAPES, NOT_FOUND_CODES, OK, FlowApi
from shared.domain.intake import BadHeader, CsvUnreadable
from shared.domain.orders import Source, Status
from shared.domain.sweep import Answer, NotFoundRule
from shared.errors import Throttled, TransientError
from shared.retry import retrying
from shared.services.intake import RunStopped, import_csv
from shared.services.sweep import SweepConfig, Sweeper

ENDPOINT = "https://dycdpapi.aliyuncs.com"
RAISED = {
    "unreadable": lambda: UnreadableAnswer("answered something that is not a JSON object", "<html>502</html>"),
    "refused": lambda: AlicomRefused("isv.InvalidParameter", "HTTP 400 isv.InvalidParameter: bad", {"Code": "x"}),
    "throttled": lambda: Throttled("throttled, retry later"),
    "transient": lambda: TransientError("HTTP 503, retry later"),
}
ORDER_FILE_ERRORS = (BadHeader, CsvUnreadable, RunStopped)


class TableCaller(PopCaller):
    """Answers QueryChargeDetail / QueryCdpOrder from a table (out id -> answer), Charge / CreateCdpOrder with OK."""

    def __init__(self, api: str, answers: dict[str, Any]) -> None:
        super().__init__(None, ENDPOINT, "FLOW_API_ENDPOINT")  # type: ignore[arg-type]
        self.shape = ANSWER_SHAPES[api]  # type: ignore[index]
        self.answers = answers
        self.attempts: dict[str, int] = {}
        self.placed: list[str] = []

    def call(self, version: str, action: str, params: Mapping[str, str], context: str) -> dict[str, Any]:
        out_id = params[self.shape.out_id_param]
        if action == self.shape.place_action:
            self.placed.append(out_id)
            return {"Code": OK, "ChargeId": f"C-{out_id}", "Data": {"ResultCode": "00000", "OrderId": f"O-{out_id}"}}
        self.attempts[out_id] = self.attempts.get(out_id, 0) + 1
        answer = self.answers.get(out_id) or processing(self.shape.detail)  # (an order of another test's file)
        if self.attempts[out_id] > 1 and _retried(self, answer):
            return processing(self.shape.detail)
        if isinstance(answer, str):
            raise RAISED[answer]()
        return copy.deepcopy(answer)


def processing(detail: str) -> dict[str, Any]:
    return {"Code": OK, detail: {"Status": "PROCESSING", "ResultCode": "00000"}}


def _retried(caller: TableCaller, answer: Any) -> bool:
    """Whether the sweep retries this answer (so a second attempt happens and hears PROCESSING)."""
    if isinstance(answer, str):
        return answer in ("throttled", "transient")
    code = "" if answer.get("Code") is None else str(answer.get("Code"))
    return code != OK and code not in NOT_FOUND_CODES and isinstance(caller.business_error("Q", answer, ""), Exception)


def expected_state(caller: TableCaller, answer: Any) -> Answer:
    """What the answer means, read from the mapping's rules (shared/adapters/flow.py) independently of its code."""
    if isinstance(answer, str) or _retried(caller, answer):
        return Answer.STILL_PENDING  # unreadable / refused: kept PENDING; transient: PROCESSING on the retry
    code = "" if answer.get("Code") is None else str(answer.get("Code"))
    if code in NOT_FOUND_CODES:
        return Answer.NOT_FOUND
    detail = answer.get(caller.shape.detail)
    if code != OK or not isinstance(detail, Mapping):
        return Answer.STILL_PENDING
    if caller.shape.result_code_field is not None:
        result_code = detail.get(caller.shape.result_code_field)
        if ("" if result_code is None else str(result_code)) not in caller.shape.result_codes_ok:
            return Answer.STILL_PENDING
    status = detail.get(caller.shape.status_field)
    return ANSWER_MAP.get(("" if status is None else str(status)).upper(), Answer.STILL_PENDING)


@pytest.fixture
def no_retry_pauses(monkeypatch):
    monkeypatch.setattr(sweep_module, "retrying", functools.partial(retrying, sleep=lambda seconds: None))


def _close_leftovers(ledger) -> None:
    """Examples share the ledger: what one leaves PENDING must not be swept by the next."""
    for out_id in ledger.expirable_orders(datetime.now(timezone.utc) + timedelta(days=1), 10_000):
        ledger.expire(out_id, "closed by the fuzz test")


@fuzz(400)
@given(order_files(), st.sampled_from(["charge", "cdp"]))
def test_an_order_file_is_imported_or_refused(ledger, text, flow_api):
    try:
        summary = import_csv(ledger, io.StringIO(text, newline=""), flow_api=flow_api)
    except ORDER_FILE_ERRORS as refused:
        assert str(refused).strip(), refused
        assert "\n" not in str(refused), refused
        return
    assert summary.rows == summary.registered + summary.claimed + summary.existing + summary.bad
    for bad in summary.bad_rows:
        assert bad.line >= 2 and bad.reason and "\n" not in bad.reason, bad
    for out_id in OUT_ID_POOL:
        order = ledger.get_order(out_id)
        if order is not None:  # registered by this file or an earlier one: a normalised mobile number
            assert order.phone is not None and len(order.phone) == 11 and order.phone.isdigit()


def test_a_bad_header_is_refused_on_one_line(ledger):
    with pytest.raises(BadHeader) as refused:
        import_csv(ledger, io.StringIO('\n"0\n0"', newline=""), flow_api="charge")
    assert "\n" not in str(refused.value)


ANSWERS = st.lists(st.tuples(query_answers("ChargeDetail"), query_answers("Data")), min_size=1, max_size=8)


@fuzz(110)
@given(
    ANSWERS,
    st.sampled_from(["charge", "cdp"]),
    st.sampled_from(["resubmit", "fail", "wait"]),
    order_files(),
)
def test_the_sweep_closes_only_what_an_answer_settles(ledger, tmp_path, no_retry_pauses, answers, api, policy, text):
    _close_leftovers(ledger)
    prefix = fresh_id("sweep")
    # the orders: those of a generated order file that imports, and more registered one by one
    with contextlib.suppress(ORDER_FILE_ERRORS):
        import_csv(ledger, io.StringIO(text.replace("order-", f"{prefix}-"), newline=""), flow_api=api)
    out_ids = [
        order
        for order in ledger.expirable_orders(datetime.now(timezone.utc) + timedelta(days=1), 10_000)
        if order.startswith(prefix)
    ]
    for index in range(len(answers) - len(out_ids)):
        out_id = f"{prefix}-x{index}"
        ledger.register_order(out_id, "13800138000", product="100M" if index % 2 else None, flow_api=api)
        out_ids.append(out_id)
    out_ids = out_ids[: len(answers)]
    answer_of = {out_id: pair[0 if api == "charge" else 1] for out_id, pair in zip(out_ids, answers, strict=False)}
    caller = TableCaller(api, answer_of)
    flow = FlowApi(None, ENDPOINT, api)  # type: ignore[arg-type]
    flow._caller = caller
    config = SweepConfig(
        grace=timedelta(0),
        qps=1e6,
        concurrency=4,
        page_size=5,
        not_found=NotFoundRule(policy, believe_after=timedelta(0)),
        report_dir=tmp_path / "reports",
    )
    before = {out_id: ledger.get_order(out_id) for out_id in out_ids}

    result = Sweeper(ledger, flow, config).run(time.monotonic() + 30)

    assert result.stopped_by == "finished", result.as_dict()
    per_order = {
        name: count
        for name, count in result.counts.items()
        if name not in ("queried", "expired") and not name.startswith(("redrive", "redelivered"))
    }
    still_open = set()
    for out_id in out_ids:
        order, was = ledger.get_order(out_id), before[out_id]
        state = expected_state(caller, answer_of[out_id])
        events = ledger.outbox_events(out_id)
        event(f"answer: {state.value}")
        if was.status is not Status.PENDING:
            assert order.status is was.status
            continue
        if state in (Answer.SUCCEEDED, Answer.FAILED):
            assert order.status is (Status.SUCCEEDED if state is Answer.SUCCEEDED else Status.FAILED), (
                answer_of[out_id],
                order,
            )
            assert order.resolved_by is Source.SWEEP and len(events) == 1
        elif state is Answer.NOT_FOUND and (policy == "fail" or (policy == "resubmit" and not was.product)):
            assert order.status is Status.FAILED and order.err_code == "NOT_FOUND" and len(events) == 1
        else:
            assert order.status is Status.PENDING, (answer_of[out_id], order)
            assert events == [] and order.last_query_answer is not None
            if state is Answer.NOT_FOUND and policy == "resubmit":
                assert out_id in caller.placed and order.charge_attempts == was.charge_attempts + 1
            still_open.add(out_id)
    assert sum(per_order.values()) >= len(out_ids), result.counts  # every order counted (earlier ones may be too)

    # the report CSV lists exactly the orders still open, whatever their out ids hold
    (csv_path,) = [path for path in result.reports if path.endswith(".csv")]
    with open(csv_path, newline="", encoding="utf-8") as report:
        listed = {row["out_id"] for row in csv.DictReader(report)}
    assert listed & set(out_ids) == still_open
