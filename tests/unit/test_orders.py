"""The order domain: which report moves which order. No database."""

from __future__ import annotations

import pytest

from shared.domain.orders import TERMINAL_STATUSES, Decision, Outcome, Source, Status, status_for_result, transition
from shared.errors import PoisonMessage

REPORTED = [Status.SUCCEEDED, Status.FAILED]


def test_result_3_is_success_and_4_is_failure():
    assert status_for_result("3") is Status.SUCCEEDED
    assert status_for_result("4") is Status.FAILED


@pytest.mark.parametrize("result", ["", "0", "1", "2", "5", "33", " 3", "success", None, 3, 4])
def test_any_other_result_is_a_poison_message(result):
    with pytest.raises(PoisonMessage) as raised:
        status_for_result(result)
    assert "result" in raised.value.reason


@pytest.mark.parametrize("reported", REPORTED)
def test_a_pending_order_takes_the_reported_status(reported):
    assert transition(Status.PENDING, reported) == Decision(Outcome.APPLIED, reported)


def test_a_pending_order_can_expire():
    assert transition(Status.PENDING, Status.EXPIRED) == Decision(Outcome.APPLIED, Status.EXPIRED)


@pytest.mark.parametrize("reported", REPORTED)
def test_an_unknown_order_is_an_orphan_created_with_the_reported_status(reported):
    assert transition(None, reported) == Decision(Outcome.ORPHAN, reported)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_the_same_terminal_status_again_is_a_duplicate(terminal):
    decision = transition(terminal, terminal)
    assert decision == Decision(Outcome.DUPLICATE)
    assert not decision.changes_order


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
@pytest.mark.parametrize("reported", sorted(TERMINAL_STATUSES))
def test_terminal_status_never_changes(terminal, reported):
    decision = transition(terminal, reported)
    assert decision.new_status is None
    assert decision.event_kind is None
    assert decision.outcome is (Outcome.DUPLICATE if reported is terminal else Outcome.CONFLICT)


def test_a_contradicting_report_is_a_conflict():
    assert transition(Status.FAILED, Status.SUCCEEDED) == Decision(Outcome.CONFLICT)
    assert transition(Status.EXPIRED, Status.SUCCEEDED) == Decision(Outcome.CONFLICT)


def test_nothing_reports_pending():
    with pytest.raises(ValueError):
        transition(Status.PENDING, Status.PENDING)
    with pytest.raises(ValueError):
        transition(None, Status.PENDING)


def test_an_unknown_order_cannot_expire():
    with pytest.raises(ValueError):
        transition(None, Status.EXPIRED)


def test_a_real_transition_names_its_outbox_event():
    assert transition(Status.PENDING, Status.SUCCEEDED).event_kind == "order.succeeded"
    assert transition(None, Status.FAILED).event_kind == "order.failed"
    assert transition(Status.PENDING, Status.EXPIRED).event_kind == "order.expired"


def test_values_are_the_strings_stored_in_the_ledger():
    assert [status.value for status in Status] == ["PENDING", "SUCCEEDED", "FAILED", "EXPIRED"]
    assert [outcome.value for outcome in Outcome] == ["applied", "duplicate", "conflict", "orphan"]
    assert [source.value for source in Source] == ["receipt", "sweep", "expiry", "charge"]
    assert Status("SUCCEEDED") == "SUCCEEDED"
    assert {Status.SUCCEEDED, Status.FAILED, Status.EXPIRED} == TERMINAL_STATUSES
