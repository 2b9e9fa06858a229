"""The messages at the edges: the FlowReport as Alicom sends it, and the envelope of one queue message.

A FlowReport (reference/alicom.md §4.1) is ``{"phone", "out_id", "result", "err_code", "err_msg"}``, every value
a string, ``result`` "3" (success) or "4" (failure). Real senders differ, so the model is lenient exactly where
they do (§6 pitfalls 7 and 10): ``result`` may be the number 3 / 4, ``out_id`` and ``phone`` may be numbers (kept
as their text), optional fields may be null, unknown extra fields are kept, and a JSON array carries several
reports. Everything else is poison, with a reason naming the field and what was wrong::

    PoisonMessage("out_id must be a string or a number, got a boolean (true)")

A boolean is never coerced (``true`` is not an out id; it is what a parser copied from SmsReport produces).
Nor is what no ledger can store: a NUL in ``out_id`` or ``phone``, a JSON string escaping a lone UTF-16 surrogate
(``"\\ud800"``), a number of more than 4300 digits. Phone numbers never appear in a reason, and a reason is one line.
An envelope's ``message_id``, ``message_type`` and ``dequeue_count`` fit the ledger's columns, or it is no envelope.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from shared.errors import PoisonMessage
from shared.logs import logger, mask_phone

MAX_BODY_BYTES = 65536  # MNS's largest message body
REQUIRED_FIELDS = ("phone", "out_id", "result")  # in the documented order
RESULTS = {"3": "success", "4": "failure"}
_SHOWN_CHARS = 40  # longest value echoed in a reason
_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_WHITESPACE = str.maketrans("", "", " \t\r\n")
# A JSON escape of a lone surrogate ("\\ud800") decodes to a str no database driver can encode as UTF-8; the cheap
# test on the text comes first, the walk over the decoded values only when it matches.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MESSAGE_ID_MAX = 128  # the ledger's message_id columns (shared.adapters.ledger.records)
MESSAGE_TYPE_MAX = 64
DEQUEUE_COUNT_MAX = 2**31 - 1  # an SQL INTEGER
_MAX_NOTED_FIELDS = 1000  # the set of extra field names already logged stays bounded
_seen_extra_fields: set[str] = set()


def _describe(value: Any) -> str:
    """A JSON value as a reason names it: its kind, and the value itself when that is short and safe."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, float):
        return f"the fractional number {value!r}"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…"
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _kind(value: Any) -> str:
    """The kind of a value without the value (for phone numbers)."""
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, bool) or value is None:
        return _describe(value)
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, int):
        return "a number"
    return _describe(value)


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError("flow_report", "{reason}", {"reason": reason})


class FlowReport(BaseModel):
    """One top-up result. Build it with ``parse_reports`` (or ``model_validate`` on a decoded JSON object)."""

    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    phone: str
    out_id: str
    result: str = Field(description='"3" (success) or "4" (failure)')
    err_code: str = ""
    err_msg: str = ""

    @field_validator("out_id", "phone", mode="before")
    @classmethod
    def _identifier(cls, value: Any, info: Any) -> str:
        name = info.field_name
        shown = _kind if name == "phone" else _describe
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            expected = "a whole number" if isinstance(value, float) else "a number"
            raise _invalid(f"{name} must be a string or {expected}, got {shown(value)}")
        text = value if isinstance(value, str) else str(value)
        if not text.strip():
            raise _invalid(f"{name} is empty")
        if "\x00" in text:  # no SQL text column of every backend stores NUL (PostgreSQL refuses it)
            raise _invalid(f"{name} contains a NUL character")
        return text

    @field_validator("result", mode="before")
    @classmethod
    def _result(cls, value: Any) -> str:
        if isinstance(value, str) and value in RESULTS:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in RESULTS:
            return str(value)
        raise _invalid(f'result must be "3" (success) or "4" (failure), got {_describe(value)}')

    @field_validator("err_code", "err_msg", mode="before")
    @classmethod
    def _optional_text(cls, value: Any, info: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise _invalid(f"{info.field_name} must be a string, a number or null, got {_describe(value)}")

    @property
    def succeeded(self) -> bool:
        return self.result == "3"

    @property
    def extra_fields(self) -> dict[str, Any]:
        """Fields Alicom sent beyond the documented five (also in ``model_dump``)."""
        return dict(self.model_extra or {})

    def __repr_args__(self) -> Any:  # the phone number stays masked in reprs, tracebacks and assertion messages
        for name, value in super().__repr_args__():
            yield name, (mask_phone(value) if name == "phone" else value)


class Envelope(BaseModel):
    """One message off the Alicom queue, as the drainer hands it on (also the processor's JSON event)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: str = Field(min_length=1, max_length=MESSAGE_ID_MAX)
    message_type: str = Field("FlowReport", max_length=MESSAGE_TYPE_MAX)
    body: str  # the MNS MessageBody exactly as stored: base64 of the JSON Alicom sent
    dequeue_count: int = Field(1, ge=0, le=DEQUEUE_COUNT_MAX)
    enqueue_time: int | None = None  # epoch milliseconds


def decode_body(body: str) -> str:
    """The JSON text inside a queue message body (base64 of UTF-8). PoisonMessage when it cannot be one.

    ASCII whitespace in the base64 text is ignored (MIME encoders wrap lines), and a UTF-8 byte order mark is
    dropped; anything else that is not strict base64 or not UTF-8 is poison.
    """
    if not isinstance(body, str):
        raise PoisonMessage(f"body must be text, got {type(body).__name__}")
    if len(body) > MAX_BODY_BYTES // 4:  # shorter bodies fit whatever their characters (4 UTF-8 bytes at most)
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise PoisonMessage(f"body is larger than {MAX_BODY_BYTES} bytes (got {size} bytes)")
    raw = _strict_base64(body)  # the common case: one C call
    if raw is None:
        compact = body.translate(_WHITESPACE)
        if not compact:
            raise PoisonMessage("body is empty")
        raw = _base64(compact)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise PoisonMessage(f"body is not UTF-8: byte 0x{bad} at offset {exc.start} ({exc.reason})") from None


def _strict_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if text else None
    except (binascii.Error, ValueError):
        return None


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)  # the common case, at C speed
    except (binascii.Error, ValueError):
        pass  # say exactly what is wrong
    for offset, char in enumerate(text):
        if char not in _BASE64_ALPHABET:
            raise PoisonMessage(
                f"body is not valid base64: character {char!r} at offset {offset} is not in the base64 alphabet"
            )
    if len(text) % 4:
        raise PoisonMessage(f"body is not valid base64: its length {len(text)} is not a multiple of 4")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonMessage(f"body is not valid base64: {exc}") from None


def parse_reports(text: str) -> list[FlowReport]:
    """The reports in a decoded body: a JSON object is one report, a JSON array of objects several.

    PoisonMessage names what was wrong; in an array, which report (``report 2 of 3: result must be ...``).
    """
    data = _load_json(text)
    if isinstance(data, dict):
        return [_report(data, "")]
    if isinstance(data, list):
        if not data:
            raise PoisonMessage("body is an empty JSON array: no FlowReport in it")
        count = len(data)
        reports = []
        for index, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise PoisonMessage(f"report {index} of {count} is {_describe(item)}, not a JSON object")
            reports.append(_report(item, f"report {index} of {count}: "))
        return reports
    raise PoisonMessage(f"body is JSON but not a FlowReport: it is {_describe(data)}, not an object or an array")


def reports_from(envelope: Envelope) -> list[FlowReport]:
    return parse_reports(decode_body(envelope.body))


def _load_json(text: str) -> Any:
    try:
        data = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise PoisonMessage(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PoisonMessage("body is not JSON this receiver accepts: nested too deeply") from None
    except ValueError as exc:  # e.g. a number of more than sys.get_int_max_str_digits() digits
        raise PoisonMessage(f"body is not JSON this receiver accepts: {_one_line(str(exc))}") from None
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(data):
        raise PoisonMessage("body is not JSON this receiver accepts: a string escapes a lone UTF-16 surrogate")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    """Whether a decoded JSON value holds a str with a lone surrogate anywhere (keys too); no recursion."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value) is not None:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:200] + "…"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            shown = key if len(key) <= _SHOWN_CHARS else key[:_SHOWN_CHARS] + "…"
            raise PoisonMessage(f"body is ambiguous JSON: the key {shown!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise PoisonMessage(f"body is not JSON: {name} is not a JSON value")


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)  # built once, not per body


def _report(data: dict[str, Any], where: str) -> FlowReport:
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if len(missing) == len(REQUIRED_FIELDS):
        keys = ", ".join(_key_name(key) for key in sorted(data)[:8]) + (", …" if len(data) > 8 else "")
        has = f"its keys are {keys}" if data else "it is an empty object"
        raise PoisonMessage(f"{where}JSON object is not a FlowReport: no phone, out_id or result ({has})")
    try:
        report = FlowReport.model_validate(data)
    except ValidationError as exc:
        raise PoisonMessage(where + _reason(exc)) from None
    _note_extra_fields(report)
    return report


def _key_name(key: str) -> str:
    """A key as a reason names it: as it is when short and printable, else quoted, escaped and shortened (a reason
    stays one line)."""
    if key.isprintable() and len(key) <= _SHOWN_CHARS:
        return key
    return repr(key if len(key) <= _SHOWN_CHARS else key[:_SHOWN_CHARS] + "…")


def _reason(exc: ValidationError) -> str:
    missing: list[str] = []
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error.get("loc") else ""
        if error["type"] == "missing":
            missing.append(name)
        else:
            problems.append(str(error["msg"]))
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        listed = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        problems.insert(0, f"{listed} {verb} missing")
    return "; ".join(problems)


def _note_extra_fields(report: FlowReport) -> None:
    """Logs each unknown field name once per instance (names only: the values stay in the raw body)."""
    new = sorted(set(report.model_extra or ()) - _seen_extra_fields)
    if new and len(_seen_extra_fields) < _MAX_NOTED_FIELDS:
        _seen_extra_fields.update(new)
        logger.info("FlowReport has fields beyond the documented five", extra={"extra_fields": new[:20]})
