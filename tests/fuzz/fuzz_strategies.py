"""Hypothesis strategies for the edges of flow-receipts: FlowReport bodies (valid, near-valid, garbage), MNS message
bodies (base64 of them, or not), processor events (message envelopes), order-file CSV text and status-query answers.

Every generated message says what it must come to: ``VALID`` (applied: never dead-lettered), ``POISON`` (dead-lettered
with a reason) or ``EITHER`` (garbage the model may or may not accept; only the other properties are checked).
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import strategies as st

from shared.domain.models import MAX_BODY_BYTES

VALID, POISON, EITHER = "valid", "poison", "either"
PHONES = ("13800138000", "15912345678", "18600001111")  # 11-digit mobiles: never to appear in a reason
OUT_ID_POOL = tuple(f"order-{n}" for n in range(6))  # shared by cases, so duplicates and conflicts happen
_ids = itertools.count(1)


def fresh_id(prefix: str = "M") -> str:
    """A message id no earlier example used (examples share one ledger per test)."""
    return f"{prefix}-{next(_ids):08d}"


BOOLEANS = st.booleans()


@cache
def pick(*options: Any) -> st.SearchStrategy[Any]:
    """``sampled_from`` built once per set of options (building strategies inside a draw costs more than drawing)."""
    return st.sampled_from(options)


@cache
def between(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=low, max_value=high)


# ---- JSON values ----------------------------------------------------------------------------------------------

# Text without lone surrogates (json.dumps would escape them; such bodies are tested on their own).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
SHORT_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(SHORT_TEXT, children, max_size=4)),
    max_leaves=12,
)


def _good_out_id(text: str) -> bool:
    return bool(text.strip()) and "\x00" not in text and len(text) <= 128


OUT_IDS = st.one_of(
    st.sampled_from(OUT_ID_POOL),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40).filter(
        _good_out_id
    ),
    st.integers(min_value=0, max_value=10**30),  # a number is kept as its text (pitfall 7)
)
PHONE_VALUES = st.one_of(st.sampled_from(PHONES), st.sampled_from([int(p) for p in PHONES]))
RESULTS = st.sampled_from(["3", "4", 3, 4])
OPTIONAL_TEXT = st.one_of(st.none(), TEXT, st.integers(min_value=-(10**9), max_value=10**9))
EXTRA_KEYS = SHORT_TEXT.filter(lambda key: key not in ("phone", "out_id", "result", "err_code", "err_msg"))
EXTRAS = st.dictionaries(EXTRA_KEYS, JSON_VALUES, max_size=3)
RANDOMS = st.randoms(use_true_random=False)
NOT_OBJECTS = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.just([]), st.just({}))
REQUIRED_SUBSETS = st.sets(st.sampled_from(["phone", "out_id", "result"]), min_size=1)
ENVELOPE_EXTRAS = st.dictionaries(st.sampled_from(["x", "trace", "extra"]), JSON_VALUES, max_size=2)
NOT_JSON = st.binary(max_size=50).filter(lambda b: not b.strip().startswith((b"{", b"[", b'"')))
ERROR_MESSAGES = st.one_of(OPTIONAL_TEXT, st.just("x" * 5000))
CODES = st.one_of(SCALARS, st.sampled_from(["isv.X", "isp.SYSTEM_ERROR", "Throttling.User"]))
GARBAGE_OBJECTS = st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=4)


@st.composite
def valid_reports(draw: Any) -> dict[str, Any]:
    report: dict[str, Any] = {"phone": draw(PHONE_VALUES), "out_id": draw(OUT_IDS), "result": draw(RESULTS)}
    for name in ("err_code", "err_msg"):
        if draw(BOOLEANS):
            report[name] = draw(OPTIONAL_TEXT)
    report.update(draw(EXTRAS))  # unknown fields are kept
    keys = list(report)
    draw(RANDOMS).shuffle(keys)  # key order is the sender's
    return {key: report[key] for key in keys}


# Values each field must refuse (a wrong type, or a value outside the field's rule).
WRONG = {
    "out_id": st.one_of(
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
        st.just(""),
        st.just("   "),
        st.just("a\x00b"),
        st.lists(SCALARS, max_size=2),
        st.dictionaries(SHORT_TEXT, SCALARS, max_size=2),
    ),
    "phone": st.one_of(
        st.booleans(), st.none(), st.floats(allow_nan=False), st.just(""), st.just("1\x00"), st.lists(SCALARS)
    ),
    "result": st.one_of(
        st.booleans(),
        st.none(),
        st.integers().filter(lambda n: n not in (3, 4)),
        st.text(max_size=5).filter(lambda t: t not in ("3", "4")),
        st.floats(),
        st.lists(st.just("3"), max_size=2),
    ),
    # longer than the ledger's columns: a report to the model, poison once it is to be written (ReportToApply)
    "out_id_too_long": st.text(min_size=129, max_size=200).filter(lambda t: "\x00" not in t and t.strip()),
    "phone_too_long": st.just("1" * 33),
    "err_code": st.one_of(st.booleans(), st.floats(allow_nan=False), st.lists(SCALARS, max_size=2), st.just({})),
    "err_msg": st.one_of(st.booleans(), st.floats(allow_nan=False), st.lists(SCALARS, max_size=2), st.just({})),
}


WRONG_FIELDS = st.sampled_from(sorted(WRONG))


@dataclass
class Body:
    """A decoded body (JSON text or anything else) and what it must come to."""

    text: str | bytes
    expect: str
    reports: int = 0  # for VALID: how many reports it carries
    note: str = ""

    def __repr__(self) -> str:
        return f"Body({_short(self.text)}, {self.expect}, reports={self.reports}, {self.note!r})"


def _dumps(data: Any, draw: Any) -> str:
    return json.dumps(
        data,
        ensure_ascii=draw(BOOLEANS),
        separators=draw(pick(*[(",", ":"), (", ", ": ")])),
        indent=draw(pick(*[None, None, 2])),
    )


@st.composite
def report_texts(draw: Any) -> Body:
    """One JSON body: a valid report, an array of them, or one of the near-valid mutations."""
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "array",
                "missing",
                "wrong_type",
                "duplicate_key",
                "huge_extra",
                "array_one_bad",
                "not_object",
            ]
        )
    )
    report = draw(valid_reports())
    if kind == "valid":
        return Body(_dumps(report, draw), VALID, 1, kind)
    if kind == "array":
        reports = [report, *draw(MORE_REPORTS)]
        return Body(_dumps(reports, draw), VALID, len(reports), kind)
    if kind == "missing":
        names = draw(REQUIRED_SUBSETS)
        return Body(_dumps({k: v for k, v in report.items() if k not in names}, draw), POISON, note=f"missing {names}")
    if kind == "wrong_type":
        name = draw(WRONG_FIELDS)
        value = draw(WRONG[name])
        report[name.replace("_too_long", "")] = value
        return Body(_dumps(report, draw), POISON, note=f"wrong {name}={value!r}"[:200])
    if kind == "duplicate_key":
        name = draw(RANDOMS).choice(sorted(report))
        text = _dumps(report, draw)
        inner = text.rstrip()[:-1].rstrip()  # without its closing brace
        return Body(f"{inner}, {json.dumps(name)}: {json.dumps(report[name])}}}", POISON, note=f"duplicate {name}")
    if kind == "huge_extra":  # just over MNS's 64 KB once base64-encoded, or well within it
        size = draw(pick(*[MAX_BODY_BYTES // 4 * 3 + 10, 20_000]))
        report["filler"] = "x" * size  # any size is a report; only its MNS body can be too large
        return Body(_dumps(report, draw), VALID, 1, kind)
    if kind == "array_one_bad":
        name = draw(WRONG_FIELDS)
        bad = dict(draw(valid_reports()))
        bad[name.replace("_too_long", "")] = draw(WRONG[name])
        reports = [report, bad]
        draw(RANDOMS).shuffle(reports)
        return Body(_dumps(reports, draw), POISON, note=f"array, wrong {name}")  # (its note names the field)
    value = draw(NOT_OBJECTS)
    return Body(json.dumps(value), POISON, note="not an object")


GARBAGE_TEXT = st.one_of(
    st.text(max_size=200),  # may hold lone surrogates: those reach the model only through the processor's JSON
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["", " ", "{", "[", "}", "null", "NaN", "Infinity", '{"a":NaN}', "[[[[[[[[", '"\\ud800"']),
    st.integers(min_value=0, max_value=10**5).map(lambda n: "[" * n + "]" * n),  # nested deeply, beyond recursion
    st.just('{"phone":"1","out_id":' + "9" * 5000 + ',"result":"3"}'),  # more digits than int() takes
    st.sampled_from(['{"phone":"1","out_id":"\\ud800","result":"3"}', '{"phone":"1","out_id":"a\\u0000","result":4}']),
)


@st.composite
def garbage_texts(draw: Any) -> Body:
    text = draw(GARBAGE_TEXT)
    return Body(text, EITHER, note="garbage")


BODIES = st.one_of(report_texts(), report_texts(), garbage_texts())
MORE_REPORTS = st.lists(valid_reports(), max_size=3)


def bodies() -> st.SearchStrategy[Body]:
    return BODIES


# ---- MNS message bodies ------------------------------------------------------------------------------------------


@dataclass
class Message:
    """A MessageBody as MNS stores it (text), with what it must come to."""

    body: str
    expect: str
    reports: int = 0
    note: str = ""
    dequeue_count: int = 1
    message_id: str = field(default_factory=fresh_id)

    def __repr__(self) -> str:
        return f"Message({self.message_id}, {_short(self.body)}, {self.expect}, reports={self.reports}, {self.note!r})"


def _short(value: str | bytes, limit: int = 300) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(value)} long)"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@st.composite
def mns_bodies(draw: Any) -> Message:
    """A decoded body put into an MNS body: base64 as Alicom does it, or damaged on the way."""
    decoded = draw(bodies())
    text = decoded.text
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    encoding = draw(pick(*["base64"] * 6, "wrapped", "bom", "not_utf8", "bad_base64", "raw", "empty"))
    expect, note = decoded.expect, decoded.note
    if encoding == "base64":
        body = _b64(raw)
    elif encoding == "wrapped":  # MIME line breaks every 76 characters: ignored
        encoded = _b64(raw)
        body = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    elif encoding == "bom":  # a UTF-8 byte order mark: dropped
        body = _b64(b"\xef\xbb\xbf" + raw)
    elif encoding == "not_utf8":
        junk = draw(pick(*[b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]))
        position = draw(between(0, len(raw)))
        body, expect = _b64(raw[:position] + junk + raw[position:]), POISON
    elif encoding == "bad_base64":
        encoded = _b64(raw) or "AAAA"
        damage = draw(pick(*["char", "length", "padding"]))
        if damage == "char":
            position = draw(between(0, len(encoded)))
            body = encoded[:position] + draw(pick(*"!*.-_~é\x00")) + encoded[position:]
        elif damage == "length":
            body = encoded + draw(pick(*["A", "AB", "ABC"]))
        else:
            body = encoded.rstrip("=") + "=" + "A" * 3
        expect = POISON
    elif encoding == "raw":  # not base64 at all (it may happen to be valid base64: EITHER)
        body = text if isinstance(text, str) else text.decode("latin-1")
        expect = EITHER
    else:
        body, expect = draw(pick(*["", " ", "\n\t "])), POISON
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        expect = POISON
    return Message(body, expect, decoded.reports if expect == VALID else 0, f"{encoding}: {note}")


@st.composite
def valid_messages(draw: Any) -> Message:
    """A report (or an array of them) as Alicom sends it: compact JSON, UTF-8, base64."""
    reports = draw(st.one_of(valid_reports().map(lambda r: [r]), MORE_REPORTS.filter(bool)))
    data = reports[0] if len(reports) == 1 and draw(BOOLEANS) else reports
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Message(_b64(text.encode("utf-8")), VALID, len(reports), "alicom")


MIXED_MESSAGES = st.one_of(valid_messages(), mns_bodies())


@cache
def _exactly(size: int) -> st.SearchStrategy[list[Message]]:
    return st.lists(MIXED_MESSAGES, min_size=size, max_size=size)


def batches(largest: int = 16) -> st.SearchStrategy[list[Message]]:
    """A received batch: 1..largest messages (evenly spread sizes, not mostly short lists), valid and poison mixed."""
    return between(1, largest).flatmap(_exactly)


# ---- processor events (the envelope as JSON) --------------------------------------------------------------------


@dataclass
class Event:
    """A processor event. Whether it is an envelope at all is Envelope's to say (the test asks it); when it is,
    ``message`` says what its body must come to (POISON when ``damaged`` is "body": no damaged body is a report)."""

    data: bytes
    message: Message
    damaged: str = ""

    def __repr__(self) -> str:
        return f"Event({_short(self.data)}, {self.message!r}, damaged={self.damaged!r})"


ODD_VALUES = st.one_of(
    st.sampled_from([None, True, False, [], {}, -1, 0, "", 1.5, "x" * 100, "x" * 64, "\u00e9"]),
    st.integers(min_value=2**31 - 2, max_value=2**80),
)


@st.composite
def events(draw: Any) -> Event:
    message = draw(mns_bodies())
    envelope: dict[str, Any] = {"message_id": message.message_id, "body": message.body}
    if draw(BOOLEANS):
        envelope["dequeue_count"] = message.dequeue_count = draw(between(0, 10))
    if draw(BOOLEANS):
        envelope["message_type"] = "FlowReport"
    if draw(BOOLEANS):
        envelope["enqueue_time"] = draw(between(0, 2**45))
    if draw(BOOLEANS):
        envelope.update(draw(ENVELOPE_EXTRAS))
    damage = draw(pick(*[None] * 6, "field", "missing", "not_json", "not_object", "not_utf8", "long_id"))
    if damage == "field":
        name = draw(pick(*["message_id", "body", "dequeue_count", "message_type", "enqueue_time"]))
        envelope[name] = draw(ODD_VALUES)
        if name == "message_id" and isinstance(envelope[name], str) and envelope[name]:
            envelope[name] = fresh_id(envelope[name][:100])  # still unique, maybe too long
        return Event(json.dumps(envelope).encode("utf-8"), message, name)
    if damage == "missing":
        name = draw(pick(*["message_id", "body"]))
        del envelope[name]
        return Event(json.dumps(envelope).encode("utf-8"), message, name)
    if damage == "not_json":
        data = draw(NOT_JSON)
        return Event(data, message, "all")
    if damage == "not_object":
        return Event(json.dumps(draw(NOT_OBJECTS)).encode(), message, "all")
    if damage == "not_utf8":
        return Event(json.dumps(envelope).encode("utf-8")[:-1] + b"\xff}", message, "all")
    if damage == "long_id":
        envelope["message_id"] = "M" * 129  # longer than any message_id column
        return Event(json.dumps(envelope).encode("utf-8"), message, "message_id")
    return Event(json.dumps(envelope, ensure_ascii=draw(BOOLEANS)).encode("utf-8"), message)


# ---- order files ------------------------------------------------------------------------------------------------

CSV_CELLS = st.one_of(
    st.sampled_from(PHONES),
    st.sampled_from(["+86 138-0013-8000", "８６13800138000", "1380013800", "abc", "", " ", "100M", "0", "007", "-1"]),
    st.sampled_from(OUT_ID_POOL),
    st.text(max_size=20),
    st.text(min_size=129, max_size=140),
)
CSV_OUT_IDS = st.one_of(st.sampled_from(OUT_ID_POOL), CSV_CELLS)
CSV_PHONES = st.one_of(st.sampled_from(PHONES), CSV_CELLS)


@st.composite
def order_files(draw: Any) -> str:
    """CSV text: a header (mostly right, sometimes wrong) and rows (mostly right, sometimes not)."""
    columns = draw(
        st.one_of(
            st.permutations(["out_id", "phone", "grade"]),
            st.permutations(["out_id", "phone"]),
            st.lists(
                st.sampled_from(["out_id", "phone", "grade", "offer_id", "OUT_ID", " Phone ", "x", ""]), max_size=4
            ),
        )
    )
    rows = []
    for _ in range(draw(between(0, 12))):
        values = {
            "out_id": draw(CSV_OUT_IDS),
            "phone": draw(CSV_PHONES),
        }
        row = [values.get(name.strip().lower(), draw(CSV_CELLS)) for name in columns]
        if draw(between(0, 9)) == 0:
            row = [*row, draw(CSV_CELLS)] if draw(BOOLEANS) else row[:-1]
        rows.append(row)
    lines = [",".join(columns)]
    for row in rows:
        cells = [(f'"{c.replace(chr(34), chr(34) * 2)}"' if any(x in c for x in ',"\r\n') else c) for c in row]
        lines.append(",".join(cells))
    text = draw(pick(*["\n", "\r\n"])).join(lines)
    damage = draw(pick(*[None] * 5, "bom", "quote", "nul", "blank_lines"))
    if damage == "bom":
        text = "\ufeff" + text
    elif damage == "quote":  # an unterminated quoted field
        text += '\n"order-x,13800138000'
    elif damage == "nul":
        text += "\norder-\x00,13800138000"
    elif damage == "blank_lines":
        text = text.replace("\n", "\n\n , ,\n")
    return text


# ---- status query answers ---------------------------------------------------------------------------------------

STATUS_VALUES = st.one_of(
    st.sampled_from(["SUCCESS", "FAILED", "PROCESSING", "success", "Failed", "UNKNOWN", "", "DONE"]),
    SCALARS,
    st.lists(SCALARS, max_size=2),
)


@st.composite
def query_answers(draw: Any, detail: str = "ChargeDetail") -> Any:
    """What QueryChargeDetail / QueryCdpOrder might answer: the emulator's shape, damaged or not, or garbage.
    A str is an exception to raise instead: "unreadable", "refused", "throttled", "transient"."""
    kind = draw(pick(*["ok"] * 5, "not_found", "code", "no_detail", "garbage", "raise"))
    code = {"Code": "OK", "Message": "OK", "RequestId": "R"}
    if kind == "ok":
        body: dict[str, Any] = {"Status": draw(STATUS_VALUES)}
        if draw(BOOLEANS):
            body["ErrorCode"] = draw(OPTIONAL_TEXT)
        if draw(BOOLEANS):
            body["ErrorMsg"] = draw(ERROR_MESSAGES)
        if detail == "Data":
            body["ResultCode"] = draw(pick(*["00000", "00000", "10004", "", None, 0]))
        body.update(draw(EXTRAS))
        return {**code, detail: body}
    if kind == "not_found":
        return {"Code": "isv.RECORD_NOT_FOUND", "Message": "not found"}
    if kind == "code":
        return {"Code": draw(CODES)}
    if kind == "no_detail":
        return {**code, detail: draw(NOT_OBJECTS)}
    if kind == "garbage":
        return draw(GARBAGE_OBJECTS)
    return draw(pick(*["unreadable", "refused", "throttled", "transient"]))
