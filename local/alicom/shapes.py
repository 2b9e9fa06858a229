"""Every response body the emulator sends, in one place.

Documented shapes (reference alicom.md): the POP error body, QueryTokenForMnsQueue (§1.2, §1.3),
CreateCdpOrder's {Code, Message, RequestId, Data: {ResultCode, ResultMsg, OrderId, ExtendParam}} and its
ResultCodes 00000 / 10004 (§5.2).

EMULATED shapes (the real fields are not public, §5.5; confirm against a live account before relying on
them): Charge's ChargeId, QueryChargeDetail's ChargeDetail, QueryCdpOrder's Data fields beyond ResultCode,
ResultMsg and ExtendParam, and the not-found answer of both status queries.

Two kinds of error, as Alicom's APIs have them:
- POP gateway errors (authentication, unknown API, missing parameter, throttling, 5xx): HTTP 4xx/5xx with
  pop_error(); the core SDK raises ServerException with the code.
- business answers: HTTP 200 with Code other than "OK" (Alicom style; every official demo checks
  Code == "OK" after the call succeeded); the core SDK returns the body and the caller must check Code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from local.alicom.charges import Charge
from local.mns import StsCredential

# Beijing time has had no daylight saving since 1991, so a fixed offset is Asia/Shanghai.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
ALICOM_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

OK = "OK"
# Business codes (HTTP 200, Code != "OK").
INVALID_PARAMETERS = "isv.INVALID_PARAMETERS"  # Alicom's code for a bad parameter value (Dysmsapi uses it)
MOBILE_NUMBER_ILLEGAL = "isv.MOBILE_NUMBER_ILLEGAL"  # Alicom's code for a malformed phone number
RECORD_NOT_FOUND = "isv.RECORD_NOT_FOUND"  # EMULATED: no charge for this out id within the last 30 days
# CreateCdpOrder Data.ResultCode (documented only through third-party sample comments).
CDP_CREATED, CDP_DUPLICATE = "00000", "10004"
CDP_QUERY_OK = "00000"  # EMULATED for QueryCdpOrder


def beijing_time(epoch_seconds: float) -> str:
    """yyyy-MM-dd HH:mm:ss in Beijing time without an offset, as Alicom writes times (§1.3)."""
    return datetime.fromtimestamp(epoch_seconds, BEIJING).strftime(ALICOM_TIME_FORMAT)


def _optional_time(epoch_seconds: float | None) -> str:
    return "" if epoch_seconds is None else beijing_time(epoch_seconds)


def pop_error(request_id: str, host_id: str, code: str, message: str) -> dict[str, str]:
    return {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": code,
        "Message": message,
        "Recommend": f"https://error-center.aliyun.com/status/search?Keyword={code}&source=PopGw",
    }


def business_error(request_id: str, code: str, message: str) -> dict[str, str]:
    return {"RequestId": request_id, "Code": code, "Message": message}


def message_token(request_id: str, credential: StsCredential, created_at: float) -> dict[str, object]:
    return {
        "RequestId": request_id,
        "Code": OK,
        "Message": OK,
        "MessageTokenDTO": {
            "AccessKeyId": credential.access_key_id,
            "AccessKeySecret": credential.access_key_secret,
            "SecurityToken": credential.security_token,
            "CreateTime": beijing_time(created_at),
            "ExpireTime": beijing_time(credential.expires_at.timestamp()),
        },
    }


def charge_accepted(request_id: str, charge: Charge) -> dict[str, str]:
    """EMULATED. A repeated OutId answers OK with the ChargeId of the first call."""
    return {"RequestId": request_id, "Code": OK, "Message": OK, "ChargeId": charge.charge_id}


def _status_fields(charge: Charge) -> dict[str, str]:
    return {
        "Status": charge.status,  # PROCESSING | SUCCESS | FAILED
        "ErrorCode": charge.err_code,
        "ErrorMsg": charge.err_msg,
        "ChargeTime": beijing_time(charge.charged_at),
        "FinishTime": _optional_time(charge.finished_at),
    }


def charge_detail(request_id: str, charge: Charge) -> dict[str, object]:
    """EMULATED QueryChargeDetail answer for a charge made within the last 30 days."""
    detail = {
        "OutId": charge.out_id,
        "ChargeId": charge.charge_id,
        "PhoneNumber": charge.phone,
        "Grade": charge.product,
        **_status_fields(charge),
    }
    return {"RequestId": request_id, "Code": OK, "Message": OK, "ChargeDetail": detail}


def cdp_order_created(request_id: str, charge: Charge, duplicate: bool) -> dict[str, object]:
    data = {
        "ResultCode": CDP_DUPLICATE if duplicate else CDP_CREATED,
        "ResultMsg": "duplicate OutOrderId" if duplicate else "success",
        "OrderId": charge.charge_id,
        "ExtendParam": "",
    }
    return {"RequestId": request_id, "Code": OK, "Message": OK, "Data": data}


def cdp_order(request_id: str, charge: Charge) -> dict[str, object]:
    """EMULATED QueryCdpOrder answer: ResultCode/ResultMsg/ExtendParam are the SDK's fields; OrderId,
    OutOrderId and the status fields (same vocabulary as QueryChargeDetail) are the emulator's."""
    data = {
        "ResultCode": CDP_QUERY_OK,
        "ResultMsg": "success",
        "ExtendParam": "",
        "OrderId": charge.charge_id,
        "OutOrderId": charge.out_id,
        "PhoneNumber": charge.phone,
        "OfferId": charge.product,
        **_status_fields(charge),
    }
    return {"RequestId": request_id, "Code": OK, "Message": OK, "Data": data}


def record_not_found(request_id: str, out_id: str) -> dict[str, str]:
    """EMULATED answer of both status queries for an unknown out id or one charged more than 30 days ago."""
    return business_error(request_id, RECORD_NOT_FOUND, f"No record for out id {out_id} in the last 30 days.")
