"""The flow top-up APIs (Dycdpapi) through aliyun-python-sdk-core: placing a top-up and asking its status, in the
generation a setting chooses (FLOW_API):

- ``charge``: 2017-05-25 ``Charge(PhoneNumber, Grade, OutId)`` and ``QueryChargeDetail(OutId)`` (alicom.md §5.1);
- ``cdp``: 2018-06-10 ``CreateCdpOrder(OfferId, PhoneNumber, OutOrderId)`` and ``QueryCdpOrder(OutOrderId)`` (§5.2).

Both charge an out id once: calling again with the same one is how a timed-out call is retried.

``place(out_id, phone, product) -> Placed`` — accepted (``duplicate`` when the provider says the out id was used
before: an earlier call may have succeeded); ``ChargeRejected`` for a definite refusal (the top-up was not placed);
``TransientError`` when the answer is unknown (timeout, 5xx, throttling, an unreadable answer: the call may or may
not have been placed); ``ConfigError`` for credentials and endpoints.

``query(out_id) -> StatusAnswer`` — SUCCEEDED, FAILED, STILL_PENDING or NOT_FOUND, with the raw answer. The real
answer fields are NOT public (§5.5): what is known is ``Data.ResultCode``/``ResultMsg``/``ExtendParam`` of
QueryCdpOrder; the rest follows the local emulator's shapes (local/alicom/shapes.py). So the meaning of an answer
is the one table below, ``ANSWER_MAP``: correct it there against a live account. An answer it does not recognise
is STILL_PENDING with the raw answer logged, never guessed terminal. ``TransientError`` (throttling, 5xx, timeouts,
dropped connections) is raised for the caller's retry (shared.retry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.adapters.alicom import AlicomRefused, PopCaller, UnreadableAnswer
from shared.domain.sweep import Answer, StatusAnswer
from shared.logs import logger, mask_phone

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient

FlowApiName = Literal["charge", "cdp"]
OK = "OK"


@dataclass(frozen=True)
class AnswerShape:
    """Where one API puts an order's status in a Code-OK answer, and what its values mean."""

    version: str
    place_action: str
    query_action: str
    out_id_param: str
    product_param: str
    detail: str  # the object holding the fields below
    status_field: str
    error_code_field: str
    error_msg_field: str
    # A detail with this field (ResultCode of QueryCdpOrder) must carry one of these values to be read at all.
    result_code_field: str | None = None
    result_codes_ok: frozenset[str] = frozenset()


# ---- THE mapping: correct it here against a live account ---------------------------------------------------
ANSWER_SHAPES: dict[FlowApiName, AnswerShape] = {
    "charge": AnswerShape(
        version="2017-05-25",
        place_action="Charge",
        query_action="QueryChargeDetail",
        out_id_param="OutId",
        product_param="Grade",
        detail="ChargeDetail",  # EMULATED: the field names of QueryChargeDetail are not public
        status_field="Status",
        error_code_field="ErrorCode",
        error_msg_field="ErrorMsg",
    ),
    "cdp": AnswerShape(
        version="2018-06-10",
        place_action="CreateCdpOrder",
        query_action="QueryCdpOrder",
        out_id_param="OutOrderId",
        product_param="OfferId",
        detail="Data",  # Data.ResultCode / ResultMsg are the SDK's; Status / ErrorCode / ErrorMsg are EMULATED
        status_field="Status",
        error_code_field="ErrorCode",
        error_msg_field="ErrorMsg",
        result_code_field="ResultCode",
        result_codes_ok=frozenset({"00000"}),
    ),
}
ANSWER_MAP: dict[str, Answer] = {  # the status field's value -> what it means (both APIs)
    "SUCCESS": Answer.SUCCEEDED,
    "FAILED": Answer.FAILED,
    "PROCESSING": Answer.STILL_PENDING,
}
NOT_FOUND_CODES = frozenset({"isv.RECORD_NOT_FOUND"})  # EMULATED: Code of "no record in the last 30 days"
# CreateCdpOrder's Data.ResultCode (third-party sample comments, §5.2): created, and out id used before.
CDP_CREATED, CDP_DUPLICATE = "00000", "10004"
# -------------------------------------------------------------------------------------------------------------


class ChargeRejected(AlicomRefused):
    """The provider refused the top-up outright (e.g. ``isv.MOBILE_NUMBER_ILLEGAL``): it was not placed."""


@dataclass(frozen=True)
class Placed:
    charge_id: str
    duplicate: bool = False  # the provider says the out id was used before
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class FlowApi:
    """One flow API generation at one endpoint. Stateless: safe to share between threads."""

    def __init__(self, client: AcsClient, endpoint: str, api: FlowApiName = "charge") -> None:
        if api not in ANSWER_SHAPES:
            raise ValueError(f"api must be one of {', '.join(ANSWER_SHAPES)}, got {api!r}")
        self.api = api
        self.shape = ANSWER_SHAPES[api]
        self._caller = PopCaller(client, endpoint, "FLOW_API_ENDPOINT")

    @property
    def endpoint(self) -> str:
        return self._caller.endpoint

    def set_client(self, client: AcsClient) -> None:
        self._caller.set_client(client)

    # ---- placing ------------------------------------------------------------------------------------------

    def place(self, out_id: str, phone: str, product: str) -> Placed:
        _require_text(out_id=out_id, phone=phone, product=product)
        shape, context = self.shape, f" (out_id={out_id})"
        params = {shape.out_id_param: out_id, "PhoneNumber": phone, shape.product_param: product}
        try:
            answer = self._caller.call(shape.version, shape.place_action, params, context)
        except AlicomRefused as refused:  # a 4xx about this request's parameters
            raise ChargeRejected(refused.code, refused.message, refused.raw) from None
        if answer.get("Code") != OK:
            error = self._caller.business_error(shape.place_action, answer, context)
            if error is not None:
                raise error
            raise ChargeRejected(str(answer.get("Code") or ""), _one_line(answer.get("Message")), answer)
        placed = self._placed(answer)
        logger.info(
            "top-up placed",
            extra={"out_id": out_id, "phone": mask_phone(phone), "api": self.api, "duplicate": placed.duplicate},
        )
        return placed

    def _placed(self, answer: dict[str, Any]) -> Placed:
        if self.api == "charge":
            return Placed(_text(answer.get("ChargeId")), raw=answer)  # EMULATED: a repeat answers the first ChargeId
        data = answer.get("Data") if isinstance(answer.get("Data"), Mapping) else {}
        code = _text(data.get("ResultCode"))
        if code not in (CDP_CREATED, CDP_DUPLICATE):
            raise ChargeRejected(code or "no ResultCode", _one_line(data.get("ResultMsg")), answer)
        return Placed(_text(data.get("OrderId")), duplicate=code == CDP_DUPLICATE, raw=answer)

    # ---- asking -------------------------------------------------------------------------------------------

    def query(self, out_id: str) -> StatusAnswer:
        _require_text(out_id=out_id)
        shape, context = self.shape, f" (out_id={out_id})"
        try:
            answer = self._caller.call(shape.version, shape.query_action, {shape.out_id_param: out_id}, context)
        except UnreadableAnswer as unreadable:
            return self._unrecognised(out_id, "an answer that is not JSON", {"body": unreadable.text})
        except AlicomRefused as refused:  # a 4xx about this one query
            return self._unrecognised(out_id, f"a refusal {refused.code}", refused.raw)
        code = _text(answer.get("Code"))
        if code in NOT_FOUND_CODES:
            return StatusAnswer(Answer.NOT_FOUND, raw=answer)
        if code != OK:
            error = self._caller.business_error(shape.query_action, answer, context)
            if error is not None:
                raise error
            return self._unrecognised(out_id, f"Code {code[:40]!r}", answer)
        detail = answer.get(shape.detail)
        if not isinstance(detail, Mapping):
            return self._unrecognised(out_id, f"Code OK without a {shape.detail} object", answer)
        if shape.result_code_field is not None:
            result_code = _text(detail.get(shape.result_code_field))
            if result_code not in shape.result_codes_ok:
                return self._unrecognised(out_id, f"{shape.detail}.{shape.result_code_field} {result_code!r}", answer)
        status = _text(detail.get(shape.status_field))
        state = ANSWER_MAP.get(status.upper())
        if state is None:
            return self._unrecognised(out_id, f"{shape.detail}.{shape.status_field} {status[:40]!r}", answer)
        return StatusAnswer(
            state, _text(detail.get(shape.error_code_field)), _text(detail.get(shape.error_msg_field)), raw=answer
        )

    def _unrecognised(self, out_id: str, what: str, raw: Mapping[str, Any]) -> StatusAnswer:
        note = f"unrecognised answer ({what}); kept PENDING"
        logger.warning(
            "status query answer not recognised: the order stays PENDING "
            "(correct ANSWER_MAP in shared/adapters/flow.py if the answer means something)",
            extra={"out_id": out_id, "api": self.api, "what": what, "raw_answer": dict(raw)},
        )
        return StatusAnswer(Answer.STILL_PENDING, note=note, raw=dict(raw))


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _one_line(value: object) -> str:
    return " ".join(_text(value).split())[:300]


def _require_text(**values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
