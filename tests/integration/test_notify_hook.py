"""The Python hook sink (NOTIFY_HOOK=module:function) and the Notifier combining it with the webhook: the hook gets
the event dict; one that raises or hangs fails the attempt (retried later) without holding the caller beyond its
timeout, and never leaves more than one hung thread behind; one that cannot be imported fails fast naming
NOTIFY_HOOK; an event is delivered only when every configured sink accepted it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import notify_hooks
import pytest
from webhook_support import WEBHOOK_SECRET, event, webhook_receiver

from shared.adapters.notify import EVENT_FIELDS, HookSink, Notifier, Verdict, WebhookSink, build_notifier
from shared.errors import ConfigError
from shared.runtime import Runtime
from shared.settings import load_settings

TIMEOUT = 0.3


@pytest.fixture(autouse=True)
def fresh_hooks() -> Iterator[None]:
    notify_hooks.reset()
    yield
    notify_hooks.release.set()  # let a hung hook thread finish


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def hook_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "notify-hook" and thread.is_alive()]


def test_the_hook_is_called_with_a_copy_of_the_event() -> None:
    hook = HookSink("notify_hooks:record", TIMEOUT)
    sent = event("evt-h1")

    result = hook.send(sent, TIMEOUT)

    assert result.verdict is Verdict.DELIVERED
    (received,) = notify_hooks.received
    assert received == sent and received is not sent


def test_the_notifier_hands_the_hook_exactly_the_webhook_fields() -> None:
    notifier = Notifier([HookSink("notify_hooks:record", TIMEOUT)])

    assert notifier.deliver(event("evt-h2")).verdict is Verdict.DELIVERED
    assert list(notify_hooks.received[0]) == list(EVENT_FIELDS)


def test_a_hook_that_raises_fails_the_attempt_with_its_error() -> None:
    hook = HookSink("notify_hooks:explode", TIMEOUT)

    result = hook.send(event("evt-boom", out_id="order-boom"), TIMEOUT)

    assert result.verdict is Verdict.FAILED
    assert result.error == "raised RuntimeError: business code failed for order-boom"


def test_a_hanging_hook_is_given_up_after_its_timeout_and_never_piles_up_threads() -> None:
    hook = HookSink("notify_hooks:hang", TIMEOUT)

    started = time.monotonic()
    first = hook.send(event("evt-hang-1"), 5.0)
    waited = time.monotonic() - started
    later = [hook.send(event(f"evt-hang-{n}"), 5.0) for n in range(2, 6)]

    assert first.verdict is Verdict.FAILED and first.error == f"did not return within {TIMEOUT:g} s"
    assert waited < TIMEOUT + 1.0  # loose sanity bound: the hook's timeout, not the caller's 5 s
    assert all(r.verdict is Verdict.FAILED and "an earlier call has not returned" in r.error for r in later)
    assert [e["event_id"] for e in notify_hooks.received] == ["evt-hang-1"]  # the others were never started
    assert len(hook_threads()) == 1 and hook.hung

    notify_hooks.release.set()  # the business code returns at last
    assert wait_until(lambda: not hook.hung)

    assert hook.send(event("evt-after"), 5.0).verdict is Verdict.DELIVERED
    assert wait_until(lambda: hook_threads() == [])


def test_concurrent_callers_share_one_hung_thread_at_most() -> None:
    hook = HookSink("notify_hooks:hang", TIMEOUT)
    results = []

    def call(n: int) -> None:
        results.append(hook.send(event(f"evt-c{n}"), 5.0))

    callers = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)

    assert len(results) == 6 and {r.verdict for r in results} == {Verdict.FAILED}
    assert len(notify_hooks.received) == 1 and len(hook_threads()) == 1


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("notify_hooks_missing_module:record", "NOTIFY_HOOK: cannot import 'notify_hooks_missing_module'"),
        ("notify_hook_broken:record", "NOTIFY_HOOK: cannot import 'notify_hook_broken' (ImportError: this module"),
        ("notify_hooks:no_such_function", "NOTIFY_HOOK: module 'notify_hooks' has no 'no_such_function'"),
        ("notify_hooks:NOT_CALLABLE", "NOTIFY_HOOK: notify_hooks:NOT_CALLABLE is not callable"),
    ],
)
def test_a_hook_that_cannot_be_used_fails_fast_naming_notify_hook(path: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        HookSink(path, TIMEOUT)

    assert str(raised.value).startswith(says)
    assert "\n" not in str(raised.value)


def test_an_event_is_delivered_only_when_the_webhook_and_the_hook_both_accept(pytestconfig: pytest.Config) -> None:
    with webhook_receiver(pytestconfig) as receiver:
        webhook = WebhookSink(receiver.url, WEBHOOK_SECRET, TIMEOUT)
        both = Notifier([webhook, HookSink("notify_hooks:record", TIMEOUT)])
        raising = Notifier([webhook, HookSink("notify_hooks:explode", TIMEOUT)])

        assert both.deliver(event("evt-both")).verdict is Verdict.DELIVERED
        failed = raising.deliver(event("evt-hook-fails"))
        receiver.misbehave(status=400)
        rejected = both.deliver(event("evt-webhook-rejects"))

        assert failed.verdict is Verdict.FAILED and failed.error.startswith("hook: raised RuntimeError")
        assert rejected.verdict is Verdict.REJECTED and rejected.error.startswith("webhook: HTTP 400")
        assert receiver.accepted() == {"evt-both": 1, "evt-hook-fails": 1}  # resent next time: consumers dedupe
        assert [e["event_id"] for e in notify_hooks.received] == ["evt-both", "evt-hook-fails", "evt-webhook-rejects"]
        webhook.close()


def test_no_sink_configured_means_no_notifier() -> None:
    environ = {"ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport", "LEDGER_URL": "sqlite://"}
    runtime = Runtime(lambda: load_settings(environ))

    assert runtime.notifier is None and runtime.notifications is None
    assert (
        build_notifier(
            webhook_url=None, webhook_secret=None, webhook_timeout_seconds=1, hook=None, hook_timeout_seconds=1
        )
        is None
    )


def test_the_runtime_builds_the_configured_notifier_once(pytestconfig: pytest.Config) -> None:
    with webhook_receiver(pytestconfig) as receiver:
        environ = {
            "ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport",
            "LEDGER_URL": "sqlite://",
            "WEBHOOK_URL": receiver.url,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "NOTIFY_HOOK": "notify_hooks:record",
            "NOTIFY_RETRY_SECONDS": "30",
        }
        runtime = Runtime(lambda: load_settings(environ))

        notifier = runtime.notifier

        assert notifier is not None and runtime.notifier is notifier
        assert notifier.describe() == {"webhook": receiver.endpoint, "hook": "notify_hooks:record"}
        assert notifier.retry_after.total_seconds() == 30
        assert WEBHOOK_SECRET not in repr(notifier)


def test_a_hook_that_cannot_be_imported_fails_the_instance_start() -> None:
    environ = {
        "ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport",
        "LEDGER_URL": "sqlite://",
        "NOTIFY_HOOK": "notify_hooks_missing_module:record",
    }
    runtime = Runtime(lambda: load_settings(environ))

    with pytest.raises(ConfigError, match=r"^NOTIFY_HOOK: "):
        runtime.warm_up()
