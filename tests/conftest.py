"""Shared fixtures: the local emulators run in-process on free loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from emulator_credentials import OWNER_ID, OWNER_SECRET, PUBLISHER_ID, PUBLISHER_SECRET
from mns.account import Account

from local.mns import MnsEmulator

# The whole session's logs are scanned for the test secrets and the tokens and secrets the emulators accept, for
# signatures (Authorization values, Signature parameters, webhook v1=) and unmasked phone numbers: tests/log_scan.py.
pytest_plugins = ["log_scan"]


@pytest.fixture
def mns_emulator(tmp_path) -> Iterator[MnsEmulator]:
    emulator = MnsEmulator(
        owner=(OWNER_ID, OWNER_SECRET),
        publisher=(PUBLISHER_ID, PUBLISHER_SECRET),
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def owner_account(mns_emulator: MnsEmulator) -> Account:
    return Account(mns_emulator.endpoint, OWNER_ID, OWNER_SECRET)


@pytest.fixture
def queue_name() -> str:
    return f"Alicom-Queue-{uuid.uuid4().int % 10**16:016d}-FlowReport"
