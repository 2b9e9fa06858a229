"""POP gateway errors: HTTP status, code and message as the gateway words them.

The core SDK raises ServerException(code, message, http_status) for any answer outside 2xx; the Tea SDKs raise
ClientException (4xx) or ServerException (5xx) with the code. The body shape is built by shapes.pop_error.

V3 (ACS3-HMAC-SHA256) requests get the RPC codes for the same faults: SignatureDoesNotMatch (400, with the server's
string to sign), InvalidTimeStamp.Expired / .Format (400, for x-acs-date), SignatureNonceUsed (400),
InvalidSignatureMethod (400, another ACS3 algorithm), InvalidAccessKeyId.NotFound (404). Not documented for V3, so
CHOSEN here: IncompleteSignature (400, a code the gateway has; the core SDK knows it) for an Authorization header that
is malformed or that leaves host or an x-acs-* header unsigned, and for a missing x-acs-date, x-acs-signature-nonce
or x-acs-content-sha256; and SignatureDoesNotMatch (400) when x-acs-content-sha256 is not the hash of the body, the
message saying so (a verifier hashes the body it received, so such a request cannot match anyway).
"""

from __future__ import annotations


class PopError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def missing_parameter(name: str) -> PopError:
    return PopError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def invalid_parameter(name: str) -> PopError:
    return PopError(400, f"Invalid{name}", f"The specified parameter {name} value is not valid.")


def invalid_version() -> PopError:
    return PopError(400, "InvalidVersion", "Specified parameter Version is not valid.")


def action_not_found() -> PopError:
    return PopError(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")


def access_key_not_found() -> PopError:
    return PopError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")


def unsupported_signature_method() -> PopError:
    return PopError(400, "InvalidSignatureMethod", "Specified signature method is not supported.")


def unsupported_signature_version() -> PopError:
    return PopError(400, "InvalidSignatureVersion", "Specified signature version is not supported.")


def timestamp_malformed() -> PopError:
    return PopError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")


def timestamp_expired() -> PopError:
    return PopError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")


def signature_does_not_match(server_string_to_sign: str) -> PopError:
    """The core SDK splits this message on ':' and compares the second part with its own string to sign; when
    they are equal (same request, different secret) it reports InvalidAccessKeySecret instead."""
    return PopError(
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation. server string to sign is:" + server_string_to_sign,
    )


SIGNATURE_MISMATCH = "Specified signature is not matched with our calculation."


def content_sha256_mismatch(server_string_to_sign: str) -> PopError:
    return PopError(
        400,
        "SignatureDoesNotMatch",
        f"{SIGNATURE_MISMATCH} The x-acs-content-sha256 header is not the SHA-256 of the request body. "
        "server string to sign is:" + server_string_to_sign,
    )


def incomplete_signature(detail: str) -> PopError:
    return PopError(400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards. {detail}")


def signature_nonce_used() -> PopError:
    return PopError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")


def throttled() -> PopError:
    return PopError(400, "Throttling.User", "Request was denied due to user flow control.")


def internal_error() -> PopError:
    return PopError(
        500, "InternalError", "The request processing has failed due to some unknown error, exception or failure."
    )


def service_unavailable() -> PopError:
    return PopError(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
