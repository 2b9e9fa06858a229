"""One receipt per asynchronous invocation: validate -> apply to the ledger (+ outbox) in one transaction -> deliver
the outbox event. Transient errors raise so FC retries; poison is dead-lettered, not raised."""

from __future__ import annotations

import json

from shared.adapters.fc import fc_context
from shared.logs import bind_invocation
from shared.runtime import runtime
from shared.services.pipeline import process_event


def initialize(context) -> None:
    runtime.warm_up()


def handler(event, context) -> str:
    invocation = fc_context(context)
    bind_invocation(invocation)
    outcome = process_event(runtime.ledger, event, fallback_id=f"invalid-event-{invocation.request_id}")
    runtime.deliver_events(outcome.events, invocation)  # after the commit, bounded; what fails is redelivered
    return json.dumps(outcome.as_dict())
