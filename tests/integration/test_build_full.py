"""`make build` with its wheels (pip, for FC's python3.10 on manylinux x86_64), for each database: what a function
loads stays within 40 MB (MySQL, the default), carries its backend's driver only and nothing development-only, and
imports and initialises under Python 3.10 from the package alone with the settings the template gives (stub
values); the processor applies a receipt to a SQLite ledger there, so the SQLAlchemy that FC gets (2.0: 2.1 needs
Python 3.11) runs the ledger code. Skipped where no Python 3.10 is installed (with CI=true that fails)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from local.build import DEV_ONLY, TARGET_BYTES, build, find_python310, probe_environment
from local.fc.functions import load_template
from tests.unit.test_template import DEPLOY_ENV

REPO = Path(__file__).resolve().parents[2]
PYTHON310 = find_python310()
pytestmark = pytest.mark.slow


def needs_python310() -> str:
    if PYTHON310 is None:
        message = "no Python 3.10 on this machine (FC_PYTHON, python3.10 on the PATH, or ~/.pyenv/versions/3.10*)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PYTHON310


@pytest.fixture(scope="module", params=["mysql", "postgresql"])
def built(request, tmp_path_factory) -> tuple[str, Path, dict]:
    out = tmp_path_factory.mktemp(f"build-{request.param}") / "build"
    manifest = build(out, db=request.param, environ=DEPLOY_ENV)
    print(
        f"\n{request.param}: {manifest['unzipped_bytes'] / 1e6:.1f} MB unzipped, {manifest['zipped_bytes'] / 1e6:.1f}"
        f" MB zipped, {manifest['files']} files; {manifest['bytecode']}"
    )
    return request.param, out, manifest


def run310(code: Path, script: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(code), **environment}
    prelude = "import sys, os; sys.path.insert(0, os.getcwd())\n"
    return subprocess.run(
        [needs_python310(), "-I", "-S", "-B", "-c", prelude + script],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_what_a_function_loads_is_small_and_has_nothing_development_only(built):
    db, out, manifest = built
    code = out / "code"
    if db == "mysql":
        assert manifest["unzipped_bytes"] <= TARGET_BYTES, manifest["largest"]
    else:  # psycopg's wheel bundles libpq with its own OpenSSL, Kerberos and LDAP (about 9.5 MB)
        assert manifest["unzipped_bytes"] <= TARGET_BYTES + 12_000_000, manifest["largest"]
    distributions = set(manifest["distributions"])
    assert not distributions & set(DEV_ONLY), distributions & set(DEV_ONLY)
    for folder in ("local", "tests", "cli", "bench", "pytest", "_pytest", "ruff", "hypothesis", "typer", "yaml"):
        assert not (code / folder).exists(), folder
    assert not (code / "Crypto").exists() and "pycryptodome" not in distributions  # one crypto library
    assert "cryptography" in distributions
    for pattern in ("*.pyi", "*.pyx", "*.c", "*.h", "*-311.pyc", "py.typed"):
        assert not list(code.rglob(pattern)), pattern
    assert list(code.rglob("*.cpython-310.pyc"))  # bytecode for FC's Python where one was found


def test_the_build_carries_its_backends_driver_only(built):
    db, out, manifest = built
    distributions = set(manifest["distributions"])
    if db == "mysql":
        assert "pymysql" in distributions and not {"psycopg", "psycopg-binary"} & distributions
        assert not (out / "code" / "psycopg").exists()
    else:
        assert {"psycopg", "psycopg-binary"} <= distributions and "pymysql" not in distributions
        assert not (out / "code" / "pymysql").exists()


def test_the_functions_import_and_initialise_under_python_310_from_the_package_alone(built):
    db, out, _ = built
    code = out / "code"
    specs = load_template(out / "template.yml", environ=DEPLOY_ENV)
    from local.build import PROBE, built_template

    environment = probe_environment(built_template(DEPLOY_ENV), db)  # the template's variables, stub values
    probe = subprocess.run(
        [needs_python310(), "-I", "-S", "-B", "-c", PROBE.read_text(), "modules", "drainer", "processor", "sweep"],
        cwd=code,
        env={"PATH": "/usr/bin:/bin", "HOME": str(code), **environment},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.splitlines()[-1])
    assert seen["python"].startswith("3.10.")
    assert seen["handlers"] == {name: ["handler", "initialize"] for name in ("drainer", "processor", "sweep")}
    for spec in specs:
        module, _, attribute = spec.handler.rpartition(".")
        assert attribute in seen["handlers"][module] and spec.initializer == f"{module}.initialize"
    assert seen["dialect"] == db
    assert all(not f.startswith(("local/", "tests/")) for f in seen["files"])


def test_the_processor_applies_a_receipt_under_python_310(built, tmp_path):
    db, out, _ = built
    if db != "mysql":
        pytest.skip("the ledger code is the same for both builds; once is enough")
    ledger = tmp_path / "ledger.sqlite3"
    script = f"""
import json, types
from shared.adapters.ledger import Ledger
Ledger({f"sqlite:///{ledger}"!r}).migrate()
import processor
ctx = types.SimpleNamespace(request_id="r-1", region="cn-hangzhou", account_id="1", tracing=None,
    credentials=types.SimpleNamespace(access_key_id="ak", access_key_secret="sk", security_token=""),
    function=types.SimpleNamespace(name="processor", handler="processor.handler", memory=512, timeout=30),
    service=types.SimpleNamespace(name="flow-receipts", log_project="", log_store="", qualifier="LATEST"))
processor.initialize(ctx)
event = open({str(REPO / "events" / "processor.json")!r}, "rb").read()
first, again = json.loads(processor.handler(event, ctx)), json.loads(processor.handler(event, ctx))
print(json.dumps([first, again]))
"""
    environment = {
        "ALICOM_QUEUE_NAME": DEPLOY_ENV["ALICOM_QUEUE_NAME"],
        "LEDGER_URL": f"sqlite:///{ledger}",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "LOG_LEVEL": "WARNING",
    }
    done = run310(out / "code", script, environment)
    assert done.returncode == 0, done.stderr
    first, again = json.loads(done.stdout.splitlines()[-1])
    assert first != again  # applied (an order created for the unregistered out id), then a duplicate
    assert "duplicate" in json.dumps(again)
