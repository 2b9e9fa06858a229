"""Daily sweep (timer, CRON_TZ=Asia/Shanghai): compensate PENDING orders with the status query, expire those past
30 days, re-drive the processor's failure queue, redeliver events, write the reconciliation report."""

from __future__ import annotations

import json

from shared.adapters.fc import credentials_from, decode_event, fc_context
from shared.logs import bind_invocation
from shared.runtime import runtime


def initialize(context) -> None:
    runtime.warm_up()


def handler(event, context) -> str:
    invocation = fc_context(context)
    bind_invocation(invocation)
    payload = decode_event(event or b"{}").get("payload")  # a timer event's, or none when it invoked itself
    dry_run = isinstance(payload, dict) and payload.get("dry_run") is True
    credentials = credentials_from(context)
    result = runtime.sweeper(credentials).run(runtime.sweep_deadline(invocation), dry_run=dry_run)
    if result.has_work_left:
        runtime.continue_sweep(credentials, invocation)
    return json.dumps(result.as_dict())
