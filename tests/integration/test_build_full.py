"""`make build` with its wheels (pip, from the flavour's lock, for FC's python3.10 on manylinux x86_64): for FC 2.0
with each database, and for FC 3.0 (`FC=3`, the fc3 extra) with MySQL once (the full builds are slow). What a
function loads stays within its target (40 MB for FC 2.0 with MySQL, the default), carries its backend's driver and
its generation's FC SDK only and nothing development-only, and imports and initialises under Python 3.10 from the
package alone with the settings the template gives (stub values); the processor applies a receipt to a SQLite
ledger there, so the SQLAlchemy that FC gets (2.0: 2.1 needs Python 3.11) runs the ledger code, with an FC 2.0
context and with an FC 3.0 one (no service). Skipped where no Python 3.10 is installed (with CI=true that fails)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from local.build import (
    DEV_ONLY,
    FC3_EXTRA_BYTES,
    TARGET_BYTES,
    build,
    built_template,
    find_python310,
    probe_environment,
    probe_script,
    template_functions,
)
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


@pytest.fixture(
    scope="module",
    params=[("2", "mysql"), ("2", "postgresql"), ("3", "mysql")],
    ids=["fc2-mysql", "fc2-postgresql", "fc3-mysql"],
)
def built(request, tmp_path_factory) -> tuple[str, Path, dict]:
    fc, db = request.param
    out = tmp_path_factory.mktemp(f"build-fc{fc}-{db}") / "build"
    manifest = build(out, db=db, fc=fc, environ=DEPLOY_ENV)
    print(
        f"\nFC={fc} {db}: {manifest['unzipped_bytes'] / 1e6:.1f} MB unzipped, {manifest['zipped_bytes'] / 1e6:.1f}"
        f" MB zipped, {manifest['files']} files; {manifest['bytecode']}"
    )
    return db, out, manifest


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
    target = TARGET_BYTES + (FC3_EXTRA_BYTES if manifest["fc"] == "3" else 0)  # FC 3.0's SDK brings the Tea stack
    assert manifest["target_bytes"] == target
    if db == "mysql":
        assert manifest["unzipped_bytes"] <= target, manifest["largest"]
    else:  # psycopg's wheel bundles libpq with its own OpenSSL, Kerberos and LDAP (about 9.5 MB)
        assert manifest["unzipped_bytes"] <= target + 12_000_000, manifest["largest"]
    distributions = set(manifest["distributions"])
    assert not distributions & set(DEV_ONLY), distributions & set(DEV_ONLY)
    for folder in ("local", "tests", "cli", "bench", "pytest", "_pytest", "ruff", "hypothesis", "typer", "yaml"):
        assert not (code / folder).exists(), folder
    assert not (code / "Crypto").exists() and "pycryptodome" not in distributions  # one crypto library
    assert "cryptography" in distributions
    for pattern in ("*.pyi", "*.pyx", "*.c", "*.h", "*-311.pyc", "py.typed"):
        assert not list(code.rglob(pattern)), pattern
    assert list(code.rglob("*.cpython-310.pyc"))  # bytecode for FC's Python where one was found


def test_the_build_carries_its_backends_driver_and_its_generations_fc_sdk_only(built):
    db, out, manifest = built
    distributions = set(manifest["distributions"])
    assert manifest["lock"] == f"requirements/fc{manifest['fc']}-{db}.lock"
    if manifest["fc"] == "2":
        assert "aliyun-fc2" in distributions and "alibabacloud-fc20230330" not in distributions
    else:
        assert "alibabacloud-fc20230330" in distributions and "aliyun-fc2" not in distributions
        assert not (out / "code" / "fc2").exists()
    if db == "mysql":
        assert "pymysql" in distributions and not {"psycopg", "psycopg-binary"} & distributions
        assert not (out / "code" / "psycopg").exists()
    else:
        assert {"psycopg", "psycopg-binary"} <= distributions and "pymysql" not in distributions
        assert not (out / "code" / "pymysql").exists()


def test_the_functions_import_and_initialise_under_python_310_from_the_package_alone(built):
    db, out, manifest = built
    code = out / "code"
    document = built_template(DEPLOY_ENV, fc=manifest["fc"])
    environment = probe_environment(document, db)  # the template's variables, stub values
    script = probe_script(manifest["fc"])  # FC=3: the FC 3.0 SDK instead of fc2, a context without a service
    probe = subprocess.run(
        [needs_python310(), "-I", "-S", "-B", "-c", script, "modules", "drainer", "processor", "sweep"],
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
    for function in template_functions(document).values():
        module, _, attribute = function["handler"].rpartition(".")
        initializer = function.get("initializer") or function["instanceLifecycleConfig"]["initializer"]["handler"]
        assert attribute in seen["handlers"][module] and initializer == f"{module}.initialize"
    assert seen["dialect"] == db
    assert all(not f.startswith(("local/", "tests/")) for f in seen["files"])


def test_the_processor_applies_a_receipt_under_python_310(built, tmp_path):
    db, out, manifest = built
    if db != "mysql":
        pytest.skip("the ledger code is the same for both databases' builds; once per FC generation is enough")
    fc3 = manifest["fc"] == "3"
    ledger = tmp_path / "ledger.sqlite3"
    # FC 2.0's python3.10 context has the service; FC 3.0's has none (role, logs and VPC are the function's)
    fc2_service = 'types.SimpleNamespace(name="flow-receipts", log_project="", log_store="", qualifier="LATEST")'
    service = "" if fc3 else f",\n    service={fc2_service}"
    name = "flow-receipts-processor" if fc3 else "processor"
    script = f"""
import json, types
from shared.adapters.ledger import Ledger
Ledger({f"sqlite:///{ledger}"!r}).migrate()
import processor
ctx = types.SimpleNamespace(request_id="r-1", region="cn-hangzhou", account_id="1", tracing=None,
    credentials=types.SimpleNamespace(access_key_id="ak", access_key_secret="sk", security_token=""),
    function=types.SimpleNamespace(name={name!r}, handler="processor.handler", memory=512, timeout=30){service})
processor.initialize(ctx)
from shared.adapters.fc import fc_context
arn = fc_context(ctx).invoked_function_arn
event = open({str(REPO / "events" / "processor.json")!r}, "rb").read()
first, again = json.loads(processor.handler(event, ctx)), json.loads(processor.handler(event, ctx))
sdk = "none"
try:
    import fc2  # noqa
    sdk = "fc2"
except ImportError:
    from shared.adapters.dispatch import fc_invoker
    fc_invoker("3", "http://127.0.0.1:9", ("ak", "sk", ""), {name!r})  # builds the FC 3.0 client, sends nothing
    sdk = "fc3"
print(json.dumps([first, again, arn, sdk]))
"""
    environment = {
        "ALICOM_QUEUE_NAME": DEPLOY_ENV["ALICOM_QUEUE_NAME"],
        "LEDGER_URL": f"sqlite:///{ledger}",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "LOG_LEVEL": "WARNING",
    }
    done = run310(out / "code", script, environment)
    assert done.returncode == 0, done.stderr
    first, again, arn, sdk = json.loads(done.stdout.splitlines()[-1])
    assert first != again  # applied (an order created for the unregistered out id), then a duplicate
    assert "duplicate" in json.dumps(again)
    if fc3:
        assert (arn, sdk) == ("acs:fc:cn-hangzhou:1:functions/flow-receipts-processor", "fc3")
    else:
        assert (arn, sdk) == ("acs:fc:cn-hangzhou:1:services/flow-receipts/functions/processor", "fc2")
