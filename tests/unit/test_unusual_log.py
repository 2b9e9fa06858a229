"""The drainer's lines about unusual outcomes: gathered, never one per receipt, none lost at the end of a run."""

from __future__ import annotations

import logging

import pytest

from shared.services.drain import MAX_LOGGED_IDS, UNUSUAL_LOG_SECONDS, UnusualLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="flow-receipts")
    return caplog


def logged(lines: pytest.LogCaptureFixture, kind_text: str) -> list[list[str]]:
    return [r.out_ids for r in lines.records if kind_text in r.getMessage()]


def test_the_first_batch_is_logged_at_once_then_out_ids_gather_until_the_interval(lines):
    clock = Clock()
    log = UnusualLog(clock)
    log.add("orphan", ["a", "b"])
    log.add("orphan", ["c"])
    clock.now += UNUSUAL_LOG_SECONDS / 2
    log.add("orphan", ["d"])
    assert logged(lines, "unregistered") == [["a", "b"]]

    clock.now += UNUSUAL_LOG_SECONDS / 2
    log.add("orphan", ["e"])
    assert logged(lines, "unregistered") == [["a", "b"], ["c", "d", "e"]]


def test_a_full_line_goes_out_without_waiting_and_the_run_end_flushes_the_rest(lines):
    log = UnusualLog(Clock())
    log.add("conflict", ["first"])
    many = [f"id-{n}" for n in range(MAX_LOGGED_IDS + 5)]
    log.add("conflict", many)
    log.add("orphan", ["stranger"])
    log.add("orphan", ["late"])
    log.flush()

    conflicts = logged(lines, "contradict")
    assert conflicts[0] == ["first"] and conflicts[1] == many[:MAX_LOGGED_IDS] and conflicts[2] == many[MAX_LOGGED_IDS:]
    assert logged(lines, "unregistered") == [["stranger"], ["late"]]
    assert all(r.count == len(r.out_ids) for r in lines.records)
    log.flush()
    assert len(lines.records) == 5  # nothing twice
