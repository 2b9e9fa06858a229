"""`make build --skip-deps` (no network), for FC 2.0 (template.yml) and FC 3.0 (`FC=3`, template.fc3.yml): ONE code
package for the three functions, a template whose every handler and initializer resolves in it, the policies
rendered with the template's values, and no secret or development file written. The build with its wheels is
tests/integration/test_build_full.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from local.build import BuildError, build, main, template_functions
from local.fc.functions import load_template
from tests.unit.test_template import DEPLOY_ENV

REPO = Path(__file__).resolve().parents[2]
JOBS = ("drainer", "processor", "sweep")


@pytest.fixture(scope="module", params=["2", "3"], ids=["fc2", "fc3"])
def fc(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def built(tmp_path_factory, fc) -> Path:
    out = tmp_path_factory.mktemp(f"build-fc{fc}") / "build"
    build(out, skip_deps=True, environ=DEPLOY_ENV, fc=fc)
    return out


def hooks(function: dict) -> tuple[str, str]:
    """(handler, initializer) of a built function, FC 2.0 or FC 3.0."""
    if "instanceLifecycleConfig" in function:
        return function["handler"], function["instanceLifecycleConfig"]["initializer"]["handler"]
    return function["handler"], function["initializer"]


def reference(fc: str, name: str) -> str:
    return f"${{env({name})}}" if fc == "2" else f"${{env('{name}')}}"


def test_one_code_package_serves_the_three_functions(built, fc):
    document = yaml.safe_load((built / "template.yml").read_text())
    functions = template_functions(document)
    names = {job: f"flow-receipts-{job}" if fc == "3" else job for job in JOBS}
    assert set(functions) == set(names.values())
    assert {f.get("codeUri", f.get("code")) for f in functions.values()} == {"./code"}
    for job, name in names.items():
        assert hooks(functions[name]) == (f"{job}.handler", f"{job}.initialize")
    assert sorted(p.name for p in (built / "code").iterdir()) == ["drainer.py", "processor.py", "shared", "sweep.py"]
    assert ("edition: 3.0.0" in (built / "template.yml").read_text()) == (fc == "3")


def test_every_handler_and_initializer_resolves_to_a_callable_in_the_package(built, fc):
    document = yaml.safe_load((built / "template.yml").read_text())
    if fc == "2":  # the local FC emulator reads the built FC 2.0 template as it reads template.yml
        specs = load_template(built / "template.yml", environ=DEPLOY_ENV)
        assert {spec.code_uri for spec in specs} == {built / "code"}
    targets = sorted({target for f in template_functions(document).values() for target in hooks(f)})
    check = (
        "import importlib, sys\n"
        "for target in sys.argv[1:]:\n"
        "    module, _, name = target.rpartition('.')\n"
        "    found = importlib.import_module(module)\n"
        "    assert callable(getattr(found, name)), target\n"
        "    assert found.__file__.startswith(sys.path[0]), found.__file__\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, *targets],
        cwd=built / "code",
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(built / "code"),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(targets) == 6


def test_no_secret_is_written_and_no_development_file_is_shipped(built, fc):
    written = "".join(p.read_text(errors="replace") for p in built.rglob("*") if p.is_file())
    for secret in ("LEDGER_URL", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        assert DEPLOY_ENV[secret] not in written
        assert reference(fc, secret) in (built / "template.yml").read_text()
    code = built / "code"
    for folder in ("local", "tests", "cli", "bench", "functions"):
        assert not (code / folder).exists()
    assert not list(code.rglob("__pycache__"))


def test_the_policies_are_rendered_with_the_templates_values(built, fc):
    policy = json.loads((built / "ram-policy.json").read_text())
    text = json.dumps(policy)
    assert "${" not in text and "acs:mns:cn-shanghai:1234567890123456:/queues/flow-receipts-dlq/messages" in text
    invoked = next(s["Resource"] for s in policy["Statement"] if s["Action"] == ["fc:InvokeFunction"])
    arn = "acs:fc:cn-shanghai:1234567890123456:"
    if fc == "2":
        assert all(r.startswith(f"{arn}services/flow-receipts") for r in invoked)
    else:  # FC 3.0: no services; the processor the drainer dispatches to, the sweep that goes on by itself
        assert invoked == [f"{arn}functions/flow-receipts-processor", f"{arn}functions/flow-receipts-sweep"]
    assert json.loads((built / "trust-policy.json").read_text())["Statement"][0]["Principal"]
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["skip_deps"] is True and manifest["db"] == "mysql" and manifest["fc"] == fc
    assert manifest["template"] == ("template.yml" if fc == "2" else "template.fc3.yml") and manifest["lock"] == ""


def test_variables_left_unset_stay_references_for_s(tmp_path, fc):
    out = tmp_path / "build"
    build(out, skip_deps=True, environ={}, fc=fc)
    text = (out / "template.yml").read_text()
    for name in ("FC_ACCOUNT_ID", "VPC_ID", "ALICOM_QUEUE_NAME"):
        assert reference(fc, name) in text
    other = "${env('" if fc == "2" else "${env(F"  # never the spelling the other edition resolves
    assert other not in text


def test_a_bad_template_or_database_stops_the_build(tmp_path, monkeypatch, capsys, fc):
    source, attribute = ("template.yml", "TEMPLATE") if fc == "2" else ("template.fc3.yml", "TEMPLATE_FC3")
    bad = tmp_path / source
    bad.write_text((REPO / source).read_text().replace("memorySize: 512", "memorySize: 500", 1))
    monkeypatch.setattr(f"local.build.{attribute}", bad)
    refused = r"memorySize: 500 is not one of" if fc == "2" else r"memorySize: 500 is not a multiple of 64"
    with pytest.raises(BuildError, match=refused):
        build(tmp_path / "out", skip_deps=True, environ=DEPLOY_ENV, fc=fc)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "out"), "--db", "oracle"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_lock_that_disagrees_with_pyproject_stops_the_build(tmp_path, fc):
    locks = tmp_path / "requirements"
    locks.mkdir()
    lock = (REPO / "requirements" / f"fc{fc}-mysql.lock").read_text()
    pinned = next(line for line in lock.splitlines() if line.startswith("pydantic=="))
    (locks / f"fc{fc}-mysql.lock").write_text(lock.replace(pinned, "pydantic==2.0.0 \\"))
    with pytest.raises(BuildError, match=r"does not agree with pyproject.toml \(run `make lock`\)"):
        build(tmp_path / "out", environ=DEPLOY_ENV, fc=fc, locks=locks)
    assert not (tmp_path / "out").exists()
