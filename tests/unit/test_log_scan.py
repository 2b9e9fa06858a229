"""The log scan (tests/log_scan.py) can fail: an inner pytest session run with ``-p log_scan`` fails when one of its
tests logs a test secret (through any logger, in Powertools extras, or an STS token an MNS emulator issued), names
the kind of secret with the secret masked, and passes when nothing leaks."""

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
