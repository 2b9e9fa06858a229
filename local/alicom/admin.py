"""The admin JSON API under <endpoint>/_admin (unsigned; local use only).

GET stats | GET, PUT, DELETE faults | GET, PUT behaviour | GET accounts | GET idle?timeout=S |
POST reports {"uid"?, "out_id", "phone", "result", "err_code"?, "err_msg"?} or {"uid"?, "raw_body"} |
GET queries (status queries answered per out id) |
POST charges {"out_id", "uid"?, "charged_at"? (ISO 8601 or epoch) | "days_ago"?, "status"?, "err_code"?,
"err_msg"?, "phone"?, "product"?, "api"?} | GET charges | GET charges/<out_id>?uid=...
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from local.alicom.charges import DuplicateOutId
from local.httpd import Handler

if TYPE_CHECKING:
    from local.alicom.server import AlicomEmulator

ADMIN_PREFIX = "/_admin"
REPORT_FIELDS = frozenset({"uid", "out_id", "phone", "result", "err_code", "err_msg", "raw_body"})
SEED_FIELDS = frozenset(
    {"uid", "out_id", "charged_at", "days_ago", "status", "err_code", "err_msg", "phone", "product", "api"}
)


class AdminError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def serve_admin(emulator: AlicomEmulator, handler: Handler, body: bytes) -> None:
    path, _, query = handler.path[len(ADMIN_PREFIX) :].partition("?")
    try:
        payload = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError as exc:
        handler.respond_json(400, {"error": f"the body is not JSON: {exc}"})
        return
    try:
        status, answer = _route(emulator, handler.command, unquote(path).rstrip("/"), dict(parse_qsl(query)), payload)
    except AdminError as exc:
        status, answer = exc.status, {"error": str(exc)}
    except DuplicateOutId as exc:
        status, answer = 409, {"error": str(exc)}
    except (ValueError, TypeError) as exc:  # FaultConfigError, BehaviourError and bad values
        status, answer = 400, {"error": str(exc)}
    handler.respond_json(status, answer)


def _route(
    emulator: AlicomEmulator, method: str, path: str, options: dict[str, str], payload: object
) -> tuple[int, object]:
    if method in ("PUT", "POST") and not isinstance(payload, dict):
        raise AdminError("the body must be a JSON object")
    body: dict = payload if isinstance(payload, dict) else {}
    route = (method, path)
    if route == ("GET", "/stats"):
        return 200, emulator.stats()
    if route == ("GET", "/faults"):
        return 200, emulator.faults()
    if route == ("PUT", "/faults"):
        emulator.set_faults(body)
        return 200, emulator.faults()
    if route == ("DELETE", "/faults"):
        emulator.set_faults({})
        return 200, emulator.faults()
    if route == ("GET", "/behaviour"):
        return 200, emulator.behaviour()
    if route == ("PUT", "/behaviour"):
        return 200, emulator.set_behaviour(**body)
    if route == ("GET", "/accounts"):
        return 200, emulator.accounts.describe()
    if route == ("GET", "/idle"):
        return 200, {"idle": emulator.wait_idle(float(options.get("timeout", 0)))}
    if route == ("POST", "/reports"):
        return 201, {"message_id": _publish(emulator, body)}
    if route == ("GET", "/queries"):
        return 200, emulator.api.queries()
    if route == ("GET", "/charges"):
        return 200, emulator.charges()
    if route == ("POST", "/charges"):
        return 201, _seed(emulator, body)
    if method == "GET" and path.startswith("/charges/"):
        out_id = path[len("/charges/") :]
        found = emulator.charge(out_id, options.get("uid"))
        if found is None:
            raise AdminError(f"no charge {out_id!r}", 404)
        return 200, found
    raise AdminError(f"no admin route {method} {path}", 404)


def _publish(emulator: AlicomEmulator, body: dict) -> str:
    unknown = set(body) - REPORT_FIELDS
    if unknown:
        raise AdminError(f"unknown report field(s): {', '.join(sorted(unknown))}")
    if "raw_body" not in body and not all(isinstance(body.get(k), str) for k in ("out_id", "phone", "result")):
        raise AdminError("a report needs string out_id, phone and result, or raw_body")
    try:
        return emulator.publish_report(**body)
    except Exception as exc:  # MNS refused it or could not be reached
        raise AdminError(f"publishing failed: {type(exc).__name__}: {exc}", 502) from None


def _seed(emulator: AlicomEmulator, body: dict) -> dict[str, object]:
    unknown = set(body) - SEED_FIELDS
    if unknown:
        raise AdminError(f"unknown charge field(s): {', '.join(sorted(unknown))}")
    if not isinstance(body.get("out_id"), str) or not body["out_id"]:
        raise AdminError("'out_id' is required")
    fields = dict(body)
    if isinstance(fields.get("charged_at"), str):
        fields["charged_at"] = datetime.fromisoformat(fields["charged_at"].replace("Z", "+00:00"))
    return emulator.seed_charge(fields.pop("out_id"), **fields)
