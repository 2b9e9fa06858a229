"""MNS error codes with their HTTP status and documented message."""

from __future__ import annotations


class MnsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def queue_not_exist() -> MnsError:
    return MnsError(404, "QueueNotExist", "The queue name you provided is not exist.")


def message_not_exist() -> MnsError:
    return MnsError(404, "MessageNotExist", "Message not exist.")


def receipt_handle_error() -> MnsError:
    return MnsError(400, "ReceiptHandleError", "The receipt handle you provide is not valid.")


def invalid_argument(message: str) -> MnsError:
    return MnsError(400, "InvalidArgument", message)


def out_of_range(element: str, low: int, high: int, unit: str = "seconds") -> MnsError:
    return invalid_argument(f"The value of {element} should between {low} and {high} {unit}.")


def malformed_xml(detail: str = "") -> MnsError:
    return MnsError(400, "MalformedXML", f"The XML you provided was not well-formed. {detail}".strip())


def access_denied(detail: str) -> MnsError:
    return MnsError(403, "AccessDenied", detail)


def internal_error() -> MnsError:
    return MnsError(500, "InternalError", "Interal error.")


def throttled() -> MnsError:
    return MnsError(400, "QpsLimitExceeded", "The qps limit of the queue is exceeded")


def token_expired() -> MnsError:
    return MnsError(403, "SecurityTokenExpired", "The security token you provided has expired.")
