"""Fixtures for the reliability tests: a `Harness` around `pipeline_support.PipelineWorld`.

The harness publishes bodies exactly as MNS stores them (base64 text, or any raw text) and remembers them by
message id, drains until the queue is empty (waiting for the visibility timeout when messages are in flight),
runs other function instances with changed settings (a ledger that is down, say), and checks after every drain
that no poller thread died of an exception (a dead poller loses its summary, not messages, but it is a crash).

Helpers live here as fixtures rather than importable modules: tests/ is on sys.path through the rootdir
conftest, tests/reliability is not guaranteed to be.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from mns.queue import QueueMeta
from pipeline_support import PipelineWorld, pipeline_world

from shared.adapters.ledger.scratch import scratch_namespace
from shared.errors import TransientError
from shared.logs import logger
from shared.runtime import Runtime
from shared.services.drain import DrainSummary
from shared.settings import load_settings

DEFAULTS = {"DRAIN_LONG_POLL_SECONDS": "0", "DRAIN_POLLERS": "2"}
SERVERS = {
    "mariadb": ("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/flow_receipts_test"),
    "postgresql": ("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/flow_receipts_test"),
}


class Harness:
    """One Alibaba side + one pipeline, with the bookkeeping the reliability tests need."""

    def __init__(self, world: PipelineWorld, crashes: list[str]) -> None:
        self.world = world
        self.ledger = world.ledger
        self.mns = world.mns
        self.alicom = world.alicom
        self.bodies: dict[str, str] = {}  # message id -> the MNS MessageBody text exactly as published
        self._crashes = crashes

    # ---- publishing -----------------------------------------------------------------------------------

    @staticmethod
    def encode(report: Any) -> str:
        """A FlowReport (or anything JSON) as Alicom sends it: compact JSON, UTF-8, base64."""
        text = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def publish_text(self, body: str) -> str:
        message_id = self.world.publish_raw(body)
        self.bodies[message_id] = body
        return message_id

    def publish(self, report: Any) -> str:
        return self.publish_text(self.encode(report))

    def set_visibility(self, seconds: int) -> None:
        self.world.owner_queue().set_attributes(QueueMeta(vis_timeout=seconds))

    # ---- draining -------------------------------------------------------------------------------------

    def _checked(self, summary: DrainSummary) -> DrainSummary:
        if self._crashes:
            crashed, self._crashes[:] = list(self._crashes), []
            raise AssertionError(f"a poller thread died during the drain: {crashed}; summary {summary.as_dict()}")
        return summary

    def drain(self, seconds: float = 10.0) -> DrainSummary:
        return self._checked(self.world.drain(seconds))

    def drain_with(self, runtime: Runtime, seconds: float = 10.0) -> DrainSummary:
        return self._checked(runtime.drainer(self.world.credentials).run(time.monotonic() + seconds))

    def drain_until_empty(self, timeout: float = 30.0, seconds: float = 10.0) -> list[DrainSummary]:
        """Drains again (after a short pause for in-flight messages to become visible) until the queue is empty."""
        summaries: list[DrainSummary] = []
        give_up = time.monotonic() + timeout
        while True:
            summaries.append(self.drain(seconds))
            if self.queue_depth() == 0 or time.monotonic() > give_up:
                return summaries
            time.sleep(0.2)

    def runtime_with(self, **settings: str) -> Runtime:
        """Another function instance: the same settings environment with some values changed."""
        environ = {**self.world.environ, **settings}
        return Runtime(lambda: load_settings(environ))

    # ---- looking ----------------------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return self.world.queue_depth()

    def queue_counts(self) -> dict[str, int]:
        return dict(self.mns.stats()["queues"].get(self.world.queue_name, {}))

    def mns_faults(self, operation: str) -> dict[str, int]:
        return dict(self.mns.stats()["operations"].get(operation, {}).get("faults", {}))

    @staticmethod
    def totals(summaries: list[DrainSummary]) -> Counter[str]:
        total: Counter[str] = Counter()
        for summary in summaries:
            total.update(summary.counts)
        return total


@pytest.fixture
def thread_crashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that ended a thread during the test (pytest would only warn about them)."""
    crashes: list[str] = []

    def record(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        crashes.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", record)
    return crashes


@pytest.fixture
def make_world(tmp_path, thread_crashes: list[str]) -> Iterator[Callable[..., Harness]]:
    """make_world(visibility=2, ledger_url=None, **settings) -> a Harness on a fresh Alibaba side and ledger."""
    with ExitStack() as stack:
        count = 0

        def make(visibility: int = 2, ledger_url: str | None = None, **settings: str) -> Harness:
            nonlocal count
            count += 1
            folder = tmp_path / f"world-{count}"
            folder.mkdir()
            world = stack.enter_context(pipeline_world(folder, ledger_url, **{**DEFAULTS, **settings}))
            harness = Harness(world, thread_crashes)
            harness.set_visibility(visibility)
            return harness

        yield make


class _Copying(io.StringIO):
    """Keeps what is written and passes it on to the stream it replaced (which may itself be scanned)."""

    def __init__(self, passed_on: Any) -> None:
        super().__init__()
        self.passed_on = passed_on

    def write(self, text: str) -> int:
        self.passed_on.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.passed_on.flush()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines our logger writes during the test."""
    handler = logger.registered_handler  # type: ignore[attr-defined]
    copy = _Copying(handler.stream)
    previous = handler.setStream(copy)
    try:
        yield lambda: [json.loads(line) for line in copy.getvalue().splitlines() if line.startswith("{")]
    finally:
        if handler.stream is copy:
            handler.setStream(previous)


# A ledger URL per backend (SQLite: None, the world's own file); servers in throw-away namespaces. An unreachable
# server skips, except in CI where it fails.
@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
def ledger_url(request) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    env_var, default = SERVERS[request.param]
    try:
        namespace = scratch_namespace(os.environ.get(env_var) or default, "flow_receipts_reliability")
        url = namespace.__enter__()
    except TransientError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{request.param} is required in CI (CI=true): {error}", pytrace=False)
        pytest.skip(f"{request.param} not reachable: {error} (set {env_var})")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        namespace.__exit__(None, None, None)
