"""The on-failure destination of asynchronous invocations: the message FC puts in an MNS queue
(reference/fc.md §6.4), and its delivery through aliyun-mns-sdk."""

from __future__ import annotations

import json
import time
from typing import Any

from local.fc.instance import Outcome

EXPIRED = "MaxAsyncEventAgeExceeded"


def destination_message(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    payload: bytes,
    last: Outcome | None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    if last is None:
        status, function_error, response = 0, "", ""
    elif last.ok:
        status, function_error, response = 200, "", last.body.decode("utf-8", "replace")
    else:
        status, function_error = 200, last.error_type
        response = json.dumps(last.error, ensure_ascii=False)
    return {
        "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": payload.decode("utf-8", "replace"),
        "responseContext": {"statusCode": status, "functionError": function_error},
        "responsePayload": response,
    }


class MnsDestination:
    """Sends one message per call with the MNS owner credential; the body is the JSON text itself (the
    queue client is switched to raw bodies, so readers should call `queue.set_encoding(False)`)."""

    def __init__(self, endpoint: str, credentials: tuple[str, str], attempts: int = 3) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self.attempts = max(1, attempts)

    def send(self, queue_name: str, message: dict[str, Any]) -> str:
        from mns.account import Account  # imported here: the emulator works without the SDK when unused
        from mns.mns_exception import MNSExceptionBase
        from mns.queue import Message

        body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        last_error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                queue = Account(self.endpoint, *self._credentials).get_queue(queue_name)
                queue.set_encoding(False)
                return queue.send_message(Message(body)).message_id
            except MNSExceptionBase as exc:
                last_error = exc
                time.sleep(0.1 * 2**attempt)
        raise RuntimeError(f"MNS SendMessage to queue {queue_name} failed: {_describe(last_error)}")


def _describe(error: Exception | None) -> str:
    kind = getattr(error, "type", None) or type(error).__name__
    message = getattr(error, "message", None) or str(error)
    return f"{kind}: {message}"
