"""Helpers for tests/security: a client clock that is off by some seconds, for one SDK at a time.

A request made ``offset`` seconds ago (a captured request replayed later) and a client whose clock is ``offset``
seconds behind look the same to a server: the Date / Timestamp / x-acs-date it carries. ``skewed_clock`` shifts the
clock of one SDK only (the module attribute the SDK reads the time from), never the process's: the emulators run in
this process and keep the true time.

A plain module: tests import it as ``from security_support import ...`` (each test directory is on sys.path).
"""

from __future__ import annotations

import datetime as _datetime
import email.utils as _email_utils
import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

SKEW_REFUSED = 16 * 60  # the services allow 15 minutes either way
SKEW_ALLOWED = 14 * 60


class ShiftedTime:
    """The ``time`` module, ``offset`` seconds off."""

    def __init__(self, offset: float) -> None:
        self._offset = offset

    def time(self) -> float:
        return _time.time() + self._offset

    def gmtime(self, secs: float | None = None) -> _time.struct_time:
        return _time.gmtime(self.time() if secs is None else secs)

    def localtime(self, secs: float | None = None) -> _time.struct_time:
        return _time.localtime(self.time() if secs is None else secs)

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def shifted_utc_timestamp(offset: float) -> str:
    """What alibabacloud_tea_openapi's Utils.get_timestamp() returns, ``offset`` seconds off."""
    moment = _datetime.datetime.now(_datetime.timezone.utc) + _datetime.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shifted_email(offset: float) -> SimpleNamespace:
    """The ``email`` package as fc2.client uses it (``email.utils.formatdate``), ``offset`` seconds off."""

    def formatdate(timeval: float | None = None, localtime: bool = False, usegmt: bool = False) -> str:
        when = _time.time() + offset if timeval is None else timeval
        return _email_utils.formatdate(when, localtime=localtime, usegmt=usegmt)

    return SimpleNamespace(utils=SimpleNamespace(formatdate=formatdate))


@contextmanager
def skewed_clock(sdk: str, offset: float) -> Iterator[None]:
    """The clock of one SDK, ``offset`` seconds off: ``mns`` (aliyun-mns-sdk: Date), ``core``
    (aliyun-python-sdk-core: RPC Timestamp), ``tea`` (the V2.0 SDKs: RPC Timestamp and V3 x-acs-date), ``fc2``
    (Date)."""
    with pytest.MonkeyPatch.context() as patch:
        if sdk == "mns":
            from mns import mns_client

            patch.setattr(mns_client, "time", ShiftedTime(offset))
        elif sdk == "core":
            from aliyunsdkcore.utils import parameter_helper

            patch.setattr(parameter_helper, "time", ShiftedTime(offset))
        elif sdk == "tea":
            from alibabacloud_tea_openapi.utils import Utils

            patch.setattr(Utils, "get_timestamp", staticmethod(lambda: shifted_utc_timestamp(offset)))
        elif sdk == "fc2":
            from fc2 import client as fc2_client

            patch.setattr(fc2_client, "email", shifted_email(offset))
        else:
            raise ValueError(f"unknown SDK {sdk!r}")
        yield
