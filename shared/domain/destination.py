"""FC's destination message (reference/fc.md §6.4) and the processor event inside it.

When FC gives up on an asynchronous invocation it sends its on-failure destination::

    {"timestamp": …, "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "requestPayload": "<the event as a string>", "responseContext": {"statusCode", "functionError"},
     "responsePayload": "…"}

The processor's event is an ``Envelope`` as JSON text. Accepted too: the destination message as base64 of its JSON
(what a queue client that encodes bodies would store), and ``requestPayload`` as an already-decoded JSON object.
Anything else is ``PoisonMessage`` with a reason; no reason quotes a value (the bodies carry phone numbers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.domain.models import Envelope, decode_body
from shared.errors import PoisonMessage

_NOT_WHAT = "not an FC destination message"


@dataclass(frozen=True)
class Destination:
    request_id: str  # FC's request id of the failed invocation ("" when absent)
    condition: str  # why FC gave up: UnhandledInvocationError, MaxAsyncEventAgeExceeded, …
    invoke_count: int | None  # approximateInvokeCount
    payload: Any  # requestPayload: the event as text, or as a decoded JSON value

    def gave_up(self) -> str:
        """``FC gave up after 3 attempts (UnhandledInvocationError)``, for a dead letter's reason."""
        attempts = "" if self.invoke_count is None else f" after {self.invoke_count} attempts"
        condition = f" ({self.condition})" if self.condition else ""
        return f"FC gave up{attempts}{condition}"


def parse_destination(body: str) -> Destination:
    """The destination message in a queue body (JSON text, or base64 of it). PoisonMessage when it is not one."""
    data = _load(_json_text(body))
    if not isinstance(data, dict):
        raise PoisonMessage(f"{_NOT_WHAT}: it is a JSON {_kind(data)}, not an object")
    context = data.get("requestContext")
    if "requestPayload" not in data or not isinstance(context, Mapping):
        keys = ", ".join(sorted(data)[:8]) + (", …" if len(data) > 8 else "")
        has = f"its keys are {keys}" if data else "it is an empty object"
        raise PoisonMessage(f"{_NOT_WHAT}: it needs requestContext (an object) and requestPayload ({has})")
    request_id, condition, count = (context.get(k) for k in ("requestId", "condition", "approximateInvokeCount"))
    return Destination(
        request_id=request_id if isinstance(request_id, str) else "",
        condition=condition if isinstance(condition, str) else "",
        invoke_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        payload=data["requestPayload"],
    )


def envelope_of(destination: Destination) -> Envelope:
    """The processor's original event. PoisonMessage when ``requestPayload`` is not an Envelope."""
    payload = destination.payload
    try:
        if isinstance(payload, str):
            if not payload.strip():
                raise PoisonMessage("requestPayload is empty: not a message envelope")
            return Envelope.model_validate_json(payload)
        if isinstance(payload, Mapping):
            return Envelope.model_validate(payload)
    except ValidationError as error:
        raise PoisonMessage(f"requestPayload is not a message envelope: {_first_problem(error)}") from None
    raise PoisonMessage(f"requestPayload is a JSON {_kind(payload)}, not a message envelope")


def _json_text(body: str) -> str:
    text = body.strip().removeprefix("\ufeff")
    if text.startswith("{"):
        return text
    try:
        return decode_body(body)
    except PoisonMessage as poison:
        raise PoisonMessage(f"{_NOT_WHAT}: neither a JSON object nor base64 of one ({poison.reason})") from None


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PoisonMessage(
            f"{_NOT_WHAT}: not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except RecursionError:
        raise PoisonMessage(f"{_NOT_WHAT}: JSON nested too deeply") from None


def _first_problem(error: ValidationError) -> str:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "null" if value is None else type(value).__name__
