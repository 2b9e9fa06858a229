"""The receiver's admin JSON API under <endpoint>/_admin (unsigned; local use only).

GET stats | GET deliveries?limit=N (the last N, default 100, with counts per event id) | DELETE deliveries |
GET, PUT, DELETE faults ({"status"?, "location"?, "latency_ms"?, "down"?: "close" | "reset", "echo"?, "times"?})
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from local.httpd import Handler

if TYPE_CHECKING:
    from local.webhook.receiver import WebhookReceiver

ADMIN_PREFIX = "/_admin"


def serve_admin(receiver: WebhookReceiver, handler: Handler, body: bytes) -> None:
    path, _, query = handler.path[len(ADMIN_PREFIX) :].partition("?")
    try:
        payload = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError as exc:
        handler.respond_json(400, {"error": f"the body is not JSON: {exc}"})
        return
    try:
        status, answer = _route(receiver, handler.command, path.rstrip("/"), dict(parse_qsl(query)), payload)
    except (ValueError, TypeError) as exc:  # FaultError and bad values
        status, answer = 400, {"error": str(exc)}
    handler.respond_json(status, answer)


def _route(
    receiver: WebhookReceiver, method: str, path: str, options: dict[str, str], payload: object
) -> tuple[int, object]:
    route = (method, path)
    if route == ("GET", "/stats"):
        return 200, receiver.stats()
    if route == ("GET", "/deliveries"):
        limit = int(options.get("limit", 100))
        return 200, {
            "accepted": dict(receiver.accepted()),
            "received": dict(receiver.received()),
            "bad_signatures": receiver.bad_signatures,
            "deliveries": [d.summary() for d in receiver.deliveries()[-limit:]] if limit > 0 else [],
        }
    if route == ("DELETE", "/deliveries"):
        receiver.reset()
        return 200, receiver.stats()
    if route == ("GET", "/faults"):
        return 200, receiver.faults()
    if route == ("PUT", "/faults"):
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        return 200, receiver.misbehave(**payload)
    if route == ("DELETE", "/faults"):
        return 200, receiver.behave()
    return 404, {"error": f"no admin route {method} {path}"}
