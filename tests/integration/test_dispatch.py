"""shared.adapters.dispatch: inline dispatch, and async dispatch against the FC emulator through both invokers, each
test run for FUNCTION_COMPUTE_API=2 (Fc2Invoker: the real fc2 client, API 2016-08-15) and FUNCTION_COMPUTE_API=3
(Fc3Invoker: the real FC 3.0 SDK alibabacloud_fc20230330, API 2023-03-30): 202 and the processor receiving the
Envelope JSON; throttling, server errors, refused connections and non-JSON error bodies as TransientError; wrong
names and keys as ConfigError; no secret in any error text or log line."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.fc import FcEmulator, FunctionSpec
from shared.adapters.dispatch import (
    AsyncDispatcher,
    Dispatched,
    Fc2Invoker,
    Fc3Invoker,
    FcAsyncDispatcher,
    InlineDispatcher,
    fc_invoker,
    processor_dispatcher,
)
from shared.domain.models import Envelope
from shared.errors import ConfigError, PoisonMessage, TransientError

AK, SK, TOKEN = "STS.dispatch-test-ak", "dispatch-test-secret-3b9e", "CAISdispatchTestSecurityToken0f4c9a"
SERVICE, FUNCTION = "flow-receipts", "processor"

RECORDER = """
import os


def handler(event, context):
    with open(os.environ["RECORD_FILE"], "ab") as out:
        out.write(event + b"\\n")
    return "recorded"
"""


def envelope(message_id: str = "MSG-1", dequeue_count: int = 1) -> Envelope:
    body = base64.b64encode(b'{"phone": "13800138000", "out_id": "o-1", "result": "3"}').decode()
    return Envelope(message_id=message_id, body=body, dequeue_count=dequeue_count, enqueue_time=1795624896814)


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


@pytest.fixture
def fc(tmp_path: Path, record_file: Path) -> Iterator[FcEmulator]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "recorder.py").write_text(RECORDER)
    spec = FunctionSpec(SERVICE, FUNCTION, "recorder.handler", code, environment={"RECORD_FILE": str(record_file)})
    with FcEmulator([spec], credentials={AK: (SK, TOKEN)}, retry_backoff_seconds=0.05) as emulator:
        yield emulator


@pytest.fixture(params=["2", "3"], ids=["fc2", "fc3"])
def api(request) -> str:
    return request.param


def make_dispatcher(api: str, endpoint: str, credentials=(AK, SK, TOKEN), function: str = FUNCTION, timeout=5.0):
    return processor_dispatcher(api, endpoint, credentials, SERVICE, function, timeout)  # type: ignore[arg-type]


@pytest.fixture
def dispatcher(fc: FcEmulator, api: str) -> Iterator[AsyncDispatcher]:
    dispatcher = make_dispatcher(api, fc.endpoint)
    yield dispatcher
    dispatcher.close()


def recorded(record_file: Path) -> list[Envelope]:
    if not record_file.exists():
        return []
    return [Envelope.model_validate_json(line) for line in record_file.read_bytes().splitlines() if line]


def assert_no_secret(text: str) -> None:
    assert SK not in text and TOKEN not in text


# --- inline ---------------------------------------------------------------------------------------------------


def test_inline_dispatch_passes_the_envelope_to_apply_and_returns_its_answer():
    seen: list[Envelope] = []
    answer = Dispatched(True, "applied", "order o-1 SUCCEEDED")

    def apply(env: Envelope) -> Dispatched:
        seen.append(env)
        return answer

    env = envelope()
    assert InlineDispatcher(apply).dispatch(env) is answer
    assert seen == [env] and seen[0] is env


def test_inline_dispatch_lets_errors_through():
    def apply(env: Envelope) -> Dispatched:
        raise TransientError("ledger unavailable")

    with pytest.raises(TransientError, match="ledger unavailable"):
        InlineDispatcher(apply).dispatch(envelope())


def test_async_dispatch_goes_through_the_invoker_interface():
    class Invoker:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        def invoke_async(self, payload: bytes) -> str:
            self.payloads.append(payload)
            return "req-1"

    invoker = Invoker()
    env = envelope()
    assert AsyncDispatcher(invoker).dispatch(env) == Dispatched(True, "accepted", "req-1")
    assert Envelope.model_validate_json(invoker.payloads[0]) == env


# --- FC async -------------------------------------------------------------------------------------------------


def test_fc_async_dispatch_is_accepted_and_the_processor_receives_the_envelope(dispatcher, fc, record_file, api):
    env = envelope("MSG-42", dequeue_count=3)

    result = dispatcher.dispatch(env)

    assert (result.accepted, result.outcome) == (True, "accepted")
    assert result.detail  # FC's request id
    assert fc.wait_idle(10)
    (record,) = fc.invocations(request_id=result.detail)
    assert (record["function"], record["type"], record["status"]) == (f"{SERVICE}/{FUNCTION}", "Async", "succeeded")
    assert record["api"] == {"2": "2016-08-15", "3": "2023-03-30"}[api]
    assert recorded(record_file) == [env]


def test_many_dispatches_reuse_the_connection_and_all_arrive(dispatcher, fc, record_file):
    envelopes = [envelope(f"MSG-{i}") for i in range(10)]
    request_ids = {dispatcher.dispatch(env).detail for env in envelopes}
    assert len(request_ids) == 10
    assert fc.wait_idle(10)
    assert sorted(e.message_id for e in recorded(record_file)) == sorted(e.message_id for e in envelopes)


@pytest.mark.parametrize(("kind", "status"), [("throttle", "429"), ("internal_error", "500")])
def test_fc_faults_are_transient_and_carry_no_secret(dispatcher, fc, record_file, caplog, kind, status):
    fc.set_faults({"operations": {"InvokeFunction": {kind: 1.0}}})
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TransientError) as info:
        dispatcher.dispatch(envelope())

    text = str(info.value)
    assert status in text and FUNCTION in text and "\n" not in text
    assert_no_secret(text)
    assert_no_secret(repr(info.value))
    assert_no_secret(caplog.text)  # fc2 would log the request headers through the root logger
    assert fc.stats()["operations"]["InvokeFunction"]["requests"] == 1  # a POST is never resent (no duplicate)
    assert recorded(record_file) == []


def test_a_dropped_connection_is_transient(dispatcher, fc):
    fc.set_faults({"operations": {"InvokeFunction": {"drop_connection": 1.0}}})
    with pytest.raises(TransientError) as info:
        dispatcher.dispatch(envelope())
    assert_no_secret(str(info.value))
    assert fc.stats()["operations"]["InvokeFunction"]["requests"] == 1  # the request was sent: never resent


def test_the_next_dispatch_after_a_fault_succeeds(dispatcher, fc, record_file):
    fc.set_faults({"operations": {"InvokeFunction": {"internal_error": 1.0}}})
    with pytest.raises(TransientError):
        dispatcher.dispatch(envelope("MSG-A"))
    fc.set_faults({})
    assert dispatcher.dispatch(envelope("MSG-A")).accepted
    assert fc.wait_idle(10)
    assert [e.message_id for e in recorded(record_file)] == ["MSG-A"]


def test_a_refused_connection_fails_fast(record_file, api):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dispatcher = make_dispatcher(api, f"http://127.0.0.1:{port}", timeout=2)
    started = time.monotonic()
    with pytest.raises(TransientError, match="unreachable") as info:
        dispatcher.dispatch(envelope())
    assert time.monotonic() - started < 3  # fc2's own transport would retry for about 30 s
    assert_no_secret(str(info.value))


def test_an_error_body_that_is_not_json_is_still_classified(api):
    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        dispatcher = make_dispatcher(api, endpoint, timeout=2)
        # fc2's transport reads the status; the FC 3.0 SDK gives the unreadable body without it
        with pytest.raises(TransientError, match="502" if api == "2" else "unreadable answer") as info:
            dispatcher.dispatch(envelope())
        assert_no_secret(str(info.value))
    finally:
        server.shutdown()
        server.server_close()


def test_an_unknown_function_is_a_config_error(fc, api):
    dispatcher = make_dispatcher(api, fc.endpoint, function="no-such-function")
    with pytest.raises(ConfigError, match=r"^PROCESSOR_(SERVICE/PROCESSOR_)?FUNCTION: ") as info:
        dispatcher.dispatch(envelope())
    assert "no-such-function" in str(info.value)
    assert_no_secret(str(info.value))


def test_wrong_credentials_are_a_config_error_without_the_secret(fc, api):
    wrong_secret = "not-the-right-secret-91c2"
    dispatcher = make_dispatcher(api, fc.endpoint, (AK, wrong_secret, TOKEN))
    with pytest.raises(ConfigError) as info:
        dispatcher.dispatch(envelope())
    text = str(info.value)
    assert "403" in text and "\n" not in text
    assert wrong_secret not in text and TOKEN not in text


def test_an_envelope_is_sent_as_the_processor_event_json(dispatcher, fc, record_file):
    env = envelope("MSG-JSON")
    dispatcher.dispatch(env)
    assert fc.wait_idle(10)
    line = record_file.read_bytes().splitlines()[0]
    assert json.loads(line) == {
        "message_id": "MSG-JSON",
        "message_type": "FlowReport",
        "body": env.body,
        "dequeue_count": 1,
        "enqueue_time": 1795624896814,
    }


def test_an_envelope_too_large_for_an_async_invocation_is_poison(dispatcher):
    huge = Envelope(message_id="MSG-BIG", body="x" * (130 * 1024))
    with pytest.raises(PoisonMessage, match="too large"):
        dispatcher.dispatch(huge)


def test_a_stale_or_replayed_signature_is_transient(fc, api):
    """RequestTimeTooSkewed (a clock off by more than 15 minutes) and, on FC 3.0, SignatureNonceUsed: the next try
    signs again."""
    fc.set_faults({})
    fc.max_clock_skew = 1e-9  # every request is now too old by the time it arrives
    try:
        with pytest.raises(TransientError, match="RequestTimeTooSkewed"):
            make_dispatcher(api, fc.endpoint).dispatch(envelope())
    finally:
        fc.max_clock_skew = 900.0


def test_the_fc3_invoker_addresses_a_migrated_function_by_its_fc3_name(fc, record_file):
    dispatcher = make_dispatcher("3", fc.endpoint, function=f"{SERVICE}${FUNCTION}")
    request_id = dispatcher.dispatch(envelope("MSG-DOLLAR")).detail
    assert fc.wait_idle(10)
    (record,) = fc.invocations(request_id=request_id)
    assert (record["function"], record["api"]) == (f"{SERVICE}/{FUNCTION}", "2023-03-30")


def test_the_invoker_follows_fc_api(fc):
    two = fc_invoker("2", fc.endpoint, (AK, SK, TOKEN), FUNCTION, service=SERVICE)
    three = fc_invoker("3", fc.endpoint, (AK, SK, TOKEN), FUNCTION, service=SERVICE)
    assert isinstance(two, Fc2Invoker) and isinstance(three, Fc3Invoker)
    assert isinstance(processor_dispatcher("2", fc.endpoint, (AK, SK, TOKEN), SERVICE, FUNCTION), FcAsyncDispatcher)
    with pytest.raises(ConfigError, match=r"^PROCESSOR_SERVICE: "):
        fc_invoker("2", fc.endpoint, (AK, SK, TOKEN), FUNCTION)
    for api in ("2", "3"):
        with pytest.raises(ConfigError, match=r"^FC_ENDPOINT: "):
            fc_invoker(api, None, (AK, SK, TOKEN), FUNCTION, service=SERVICE)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"^credentials: "):
            fc_invoker(api, fc.endpoint, (AK, None, None), FUNCTION, service=SERVICE)  # type: ignore[arg-type]
    assert SK not in repr(three) and TOKEN not in repr(three)


def test_an_answer_slower_than_the_timeout_is_transient(fc, api):
    fc.set_faults({"operations": {"InvokeFunction": {"latency_ms": 1500}}})
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out") as info:
        make_dispatcher(api, fc.endpoint, timeout=0.5).dispatch(envelope())
    assert time.monotonic() - started < 1.4
    assert_no_secret(str(info.value))
