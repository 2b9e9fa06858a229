"""`make build --skip-deps` (no network): ONE code package for the three functions, a template whose every handler
and initializer resolves in it, the policies rendered with the template's values, and no secret or development
file written. The build with its wheels is tests/integration/test_build_full.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from local.build import BuildError, build, main
from local.fc.functions import load_template
from tests.unit.test_template import DEPLOY_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "build"
    build(out, skip_deps=True, environ=DEPLOY_ENV)
    return out


def test_one_code_package_serves_the_three_functions(built):
    document = yaml.safe_load((built / "template.yml").read_text())
    functions = {e["props"]["function"]["name"]: e["props"]["function"] for e in document["services"].values()}
    assert set(functions) == {"drainer", "processor", "sweep"}
    assert {f["codeUri"] for f in functions.values()} == {"./code"}
    for name, function in functions.items():
        assert (function["handler"], function["initializer"]) == (f"{name}.handler", f"{name}.initialize")
    assert sorted(p.name for p in (built / "code").iterdir()) == ["drainer.py", "processor.py", "shared", "sweep.py"]


def test_every_handler_and_initializer_resolves_to_a_callable_in_the_package(built):
    specs = load_template(built / "template.yml", environ=DEPLOY_ENV)
    targets = sorted({spec.handler for spec in specs} | {spec.initializer for spec in specs if spec.initializer})
    assert {spec.code_uri for spec in specs} == {built / "code"}
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


def test_no_secret_is_written_and_no_development_file_is_shipped(built):
    written = "".join(p.read_text(errors="replace") for p in built.rglob("*") if p.is_file())
    for secret in ("LEDGER_URL", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        assert DEPLOY_ENV[secret] not in written
        assert f"${{env({secret})}}" in (built / "template.yml").read_text()
    code = built / "code"
    for folder in ("local", "tests", "cli", "bench", "functions"):
        assert not (code / folder).exists()
    assert not list(code.rglob("__pycache__"))


def test_the_policies_are_rendered_with_the_templates_values(built):
    policy = json.loads((built / "ram-policy.json").read_text())
    text = json.dumps(policy)
    assert "${" not in text and "acs:mns:cn-shanghai:1234567890123456:/queues/flow-receipts-dlq/messages" in text
    assert json.loads((built / "trust-policy.json").read_text())["Statement"][0]["Principal"]
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["skip_deps"] is True and manifest["db"] == "mysql"


def test_variables_left_unset_stay_references_for_s(tmp_path):
    out = tmp_path / "build"
    build(out, skip_deps=True, environ={})
    text = (out / "template.yml").read_text()
    assert "${env(FC_ACCOUNT_ID)}" in text and "${env(VPC_ID)}" in text and "${env(ALICOM_QUEUE_NAME)}" in text
    assert "${env('" not in text  # never the quoted form Serverless Devs cannot resolve


def test_a_bad_template_or_database_stops_the_build(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "template.yml"
    bad.write_text((REPO / "template.yml").read_text().replace("memorySize: 512", "memorySize: 500", 1))
    monkeypatch.setattr("local.build.TEMPLATE", bad)
    with pytest.raises(BuildError, match=r"memorySize: 500 is not one of"):
        build(tmp_path / "out", skip_deps=True, environ=DEPLOY_ENV)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "out"), "--db", "oracle"])
    assert "invalid choice" in capsys.readouterr().err
