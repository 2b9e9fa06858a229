"""What the sweep does with one PENDING order given the status query's answer (shared.domain.sweep)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.domain.sweep import (
    MAX_SUBMISSIONS,
    Answer,
    NotFoundRule,
    PendingOrder,
    StatusAnswer,
    Step,
    decide,
    is_beyond_window,
)

NOW = datetime(2026, 12, 1, 19, 30, tzinfo=timezone.utc)  # 03:30 in Beijing: the daily sweep
RULE = NotFoundRule("resubmit", believe_after=timedelta(minutes=30), resubmit_max_age=timedelta(days=1))
NOT_FOUND = StatusAnswer(Answer.NOT_FOUND)


def order(hours_ago: float = 2, **fields) -> PendingOrder:
    values = {"out_id": "o-1", "submitted_at": NOW - timedelta(hours=hours_ago), "product": "100M", **fields}
    return PendingOrder(**values)


@pytest.mark.parametrize(("state", "result"), [(Answer.SUCCEEDED, "3"), (Answer.FAILED, "4")])
def test_a_final_answer_is_applied_like_a_receipt(state: Answer, result: str):
    answer = StatusAnswer(state, "UNKNOW" if result == "4" else "")

    assert decide(answer, order(), RULE, NOW).step is Step.APPLY
    assert answer.result == result


def test_still_pending_keeps_the_order_open_with_the_reason():
    processing = decide(StatusAnswer(Answer.STILL_PENDING), order(), RULE, NOW)
    unrecognised = decide(
        StatusAnswer(Answer.STILL_PENDING, note="unrecognised answer (Status 'X')"), order(), RULE, NOW
    )

    assert (processing.step, processing.note) == (Step.KEEP, "the provider is still processing the top-up")
    assert (unrecognised.step, unrecognised.note) == (Step.KEEP, "unrecognised answer (Status 'X')")


def test_not_found_is_not_believed_right_after_the_top_up_was_placed():
    placed_just_now = order(hours_ago=5, last_charge_at=NOW - timedelta(minutes=10), charge_attempts=1)

    assert decide(NOT_FOUND, placed_just_now, RULE, NOW).step is Step.KEEP
    assert decide(NOT_FOUND, order(hours_ago=0.2), RULE, NOW).step is Step.KEEP


def test_an_order_whose_process_died_before_the_call_is_submitted_by_the_sweep():
    never_sent = order(hours_ago=2, charge_attempts=0)

    decision = decide(NOT_FOUND, never_sent, RULE, NOW)

    assert decision.step is Step.RESUBMIT and "same out id" in decision.note


def test_resubmission_stops_after_two_submissions_and_for_old_or_foreign_orders():
    twice = order(charge_attempts=MAX_SUBMISSIONS, last_charge_at=NOW - timedelta(hours=1))
    too_old = order(hours_ago=30, charge_attempts=1, last_charge_at=NOW - timedelta(hours=30))
    placed_by_the_business = order(product=None)

    for pending, why in [
        (twice, "already submitted 2 times"),
        (too_old, "too old to re-submit"),
        (placed_by_the_business, "not placed by flow-receipts"),
    ]:
        decision = decide(NOT_FOUND, pending, RULE, NOW)
        assert decision.step is Step.FAIL and why in decision.note


def test_the_not_found_policy_can_fail_at_once_or_wait_for_expiry():
    fail = NotFoundRule("fail", believe_after=timedelta(minutes=30))
    wait = NotFoundRule("wait", believe_after=timedelta(minutes=30))

    assert decide(NOT_FOUND, order(), fail, NOW).step is Step.FAIL
    waiting = decide(NOT_FOUND, order(), wait, NOW)
    assert waiting.step is Step.KEEP and "until it expires" in waiting.note


def test_the_window_is_thirty_days():
    assert not is_beyond_window(order(hours_ago=30 * 24 - 1), NOW)
    assert is_beyond_window(order(hours_ago=30 * 24 + 1), NOW)
