"""The log scan (tests/log_scan.py) can fail: an inner pytest session run with ``-p log_scan`` fails when one of its
tests logs a test secret (through any logger, in Powertools extras, or an STS token an MNS emulator issued), names
the kind of secret with the secret masked, and passes when nothing leaks.

The shapes (signatures, unmasked phone numbers) and the secrets and tokens emulators verify with are planted by a
second inner session, with the product's log-record redaction switched off for its tests: what is proven is the scan,
the independent check behind the redactor, not the redactor (tests/unit/test_logs.py and test_log_redaction.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from emulator_credentials import OWNER_SECRET, PUBLISHER_SECRET

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent

pytestmark = pytest.mark.slow

LEAKY = """
import logging

from emulator_credentials import OWNER_SECRET, PUBLISHER_SECRET

from local.mns.credentials import CredentialStore
from shared.logs import logger


def test_a_plain_logger_prints_a_secret():
    logging.getLogger("leaky.client").warning("connecting with %s", OWNER_SECRET)


def test_powertools_extras_carry_a_secret():
    logger.info("configured", extra={"detail": PUBLISHER_SECRET})


def test_an_issued_sts_token_is_logged():
    credential = CredentialStore(("o", "o-secret-1234"), ("p", "p-secret-1234")).issue_sts("q", 60)
    logging.getLogger("leaky.sts").error("issued %s", credential.security_token)
"""

CLEAN = """
import logging

from local.mns.credentials import CredentialStore
from shared.logs import logger


def test_ordinary_logging():
    credential = CredentialStore(("o", "o-secret-1234"), ("p", "p-secret-1234")).issue_sts("q", 60)
    logging.getLogger("calm").warning("issued a token for %s", credential.access_key_id)
    logger.info("drain finished", extra={"received": 3, "queue": "Alicom-Queue-1-FlowReport"})
"""


UNREDACTED = """
import logging

import pytest


@pytest.fixture(autouse=True)
def unredacted():
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(factory)
"""

# Each test plants one thing the product's redactor would have hidden, on a logging path it does not cover (the
# record factory is put back to the stdlib's for the test, as a logging path added without it would be).
SHAPED = (
    UNREDACTED
    + """

from local import acs3
from local.alicom import signing as alicom_signing
from local.alicom.accounts import AccountBook
from local.fc import FcEmulator
from local.fc import signing as fc_signing
from local.mns import signing as mns_signing
from local.webhook import signing as webhook_signing

log = logging.getLogger("leaky.shapes")



def test_mns_authorization_header():
    log.error("sent Authorization: MNS STS.abc123:%s", mns_signing.signature("k", "GET"))


def test_fc_authorization_header_in_a_headers_dict():
    log.error("request headers %s", {"authorization": "FC local-ak:" + fc_signing.signature("k", "POST")})


def test_rpc_signature_query_parameter():
    log.error("GET http://127.0.0.1:1/?AccessKeyId=ak&Signature=Hq8%2Bq3N0%2FvJ0q7yF5cQmS1a2b3c%3D&Timestamp=x")


def test_acs3_authorization_header():
    sig = acs3.signature("k", "ACS3-HMAC-SHA256")
    log.error("ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=%s", sig)


def test_signature_field_in_json():
    log.error('{"Signature": "%s"}', alicom_signing.signature("k", "GET&%2F&"))


def test_webhook_signature_header():
    log.error("X-Flow-Receipts-Signature: v1=%s", "ab" * 32)


def test_full_phone_number():
    log.warning("charge refused for 13912345678")


def test_phone_number_with_country_code_in_json():
    log.warning('{"phone": "+86 13800138000"}')


def test_secret_an_emulator_verified_with():
    alicom_signing.signature("alicom-verified-secret-5e1f", "GET&%2F&")
    log.error("client configured with alicom-verified-secret-5e1f")


def test_webhook_secret_the_receiver_verified_with():
    webhook_signing.problem(b"whsec-verified-0c4d2a", "1", "v1=00", b"{}", 1.0, 300.0)
    log.error("webhook secret is whsec-verified-0c4d2a")


def test_fc_sts_token_configured_in_the_emulator():
    with FcEmulator([], credentials={"STS.fc-key": ("fc-configured-secret-8d2e", "fc-configured-token-51ab")}):
        pass
    log.error("token fc-configured-token-51ab")


def test_alicom_sts_token_configured_in_the_emulator():
    AccountBook({"STS.alicom-key": ("alicom-configured-secret-3c1d", "1", "alicom-configured-token-9e0f")})
    log.error("token alicom-configured-token-9e0f")
"""
)

SHAPED_CLEAN = (
    UNREDACTED
    + """

log = logging.getLogger("calm.shapes")



def test_what_looks_close_but_is_not_a_secret():
    log.warning("phone 138****8000, masked; epoch ms 1733100000000, seconds 1733100000, uid 1357913579135791")
    log.warning("message id 5F290C926D472878-2-14D9529A8FA-200000001, out_id order-42, count 13800")
    log.warning("Signature=***, SignatureNonce=3f2a9c4b7d1e4f6a8b0c, SignatureMethod=HMAC-SHA1")
    log.warning("SignatureDoesNotMatch: Specified signature is not matched with our calculation.")
    log.warning("authorization: FC ***, x-acs-signature-nonce: 0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    log.warning("FC 2.0 and FC 3.0; MNS queue Alicom-Queue-1234567890123456-FlowReport; v1=short")
"""
)

SHAPE_KINDS = {
    "test_mns_authorization_header": "signature (MNS / FC Authorization value)",
    "test_fc_authorization_header_in_a_headers_dict": "signature (MNS / FC Authorization value)",
    "test_rpc_signature_query_parameter": "signature (Signature parameter or field)",
    "test_acs3_authorization_header": "signature (Signature parameter or field)",
    "test_signature_field_in_json": "signature (Signature parameter or field)",
    "test_webhook_signature_header": "webhook signature (v1=...)",
    "test_full_phone_number": "unmasked mobile phone number",
    "test_phone_number_with_country_code_in_json": "unmasked mobile phone number",
    "test_secret_an_emulator_verified_with": "Alicom AccessKey secret (verified by the RPC emulator)",
    "test_webhook_secret_the_receiver_verified_with": "webhook secret (verified by the webhook receiver)",
    "test_fc_sts_token_configured_in_the_emulator": "FC STS security token (configured in an FC emulator)",
    "test_alicom_sts_token_configured_in_the_emulator": "Alicom STS token (configured in an Alicom emulator)",
}


def run_inner(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(source)
    path = os.pathsep.join(p for p in (str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "log_scan", "-p", "no:cacheprovider", "-q", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_session_whose_tests_log_secrets_fails_and_names_them_masked(tmp_path: Path) -> None:
    result = run_inner(tmp_path, LEAKY)

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "3 passed" in output  # the tests themselves pass: the scan fails the session
    assert "log scan: secrets leaked into the logs" in output
    assert "emulator_credentials.OWNER_SECRET leaked" in output
    assert "emulator_credentials.PUBLISHER_SECRET leaked" in output
    assert "MNS STS security token (issued during the run) leaked" in output
    assert "test_inner.py::test_a_plain_logger_prints_a_secret" in output
    assert "connecting with <masked:emulator_credentials.OWNER_SECRET>" in output
    assert "Powertools output" in output  # the teed JSON line, besides the record
    for secret in (OWNER_SECRET, PUBLISHER_SECRET):
        assert secret not in output


def test_a_session_without_leaks_passes(tmp_path: Path) -> None:
    result = run_inner(tmp_path, CLEAN)

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.OK, output
    assert "1 passed" in output
    assert "log scan FAILED" not in output
    assert re.search(r"log scan: [1-9]\d* log lines scanned for \d+ secret values \(1 STS credentials issued", output)
    assert "no leak" in output


def test_signatures_tokens_phone_numbers_and_verified_secrets_are_caught_by_shape(tmp_path: Path) -> None:
    result = run_inner(tmp_path, SHAPED)

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert f"{len(SHAPE_KINDS)} passed" in output
    for test, kind in SHAPE_KINDS.items():
        assert re.search(rf"{re.escape(kind)} leaked during test_inner\.py::{test}, in ", output), (test, output)
    # the report masks what it found
    for planted in ("13912345678", "13800138000", "ab" * 32, "Hq8%2Bq3N0"):
        assert planted not in output
    for secret in (
        "alicom-verified-secret-5e1f",
        "whsec-verified-0c4d2a",
        "fc-configured-token-51ab",
        "alicom-configured-token-9e0f",
    ):
        assert secret not in output
    assert "charge refused for <masked:unmasked mobile phone number>" in output


def test_near_misses_of_the_shapes_pass(tmp_path: Path) -> None:
    result = run_inner(tmp_path, SHAPED_CLEAN)

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.OK, output
    assert "no leak" in output
