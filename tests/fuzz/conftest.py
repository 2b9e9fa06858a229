"""Fixtures for the property-based tests: a ledger on SQLite in a temp dir for each test (its examples share it, so
they use fresh message ids). The Hypothesis settings are in fuzz_support.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.adapters.ledger import Ledger
from shared.logs import logger


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        opened.migrate()
        yield opened


@pytest.fixture(autouse=True)
def quiet_logger() -> Iterator[None]:
    """Thousands of dead letters log thousands of lines: above WARNING only, so the run's time goes to the cases."""
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)
