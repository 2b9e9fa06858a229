"""`make deploy [FC=2|3]` (local/deploy.py) says clearly what is missing — the build (for the same FC generation),
the `s` CLI, its credentials, the variables the template needs — and otherwise runs `s deploy -t build/template.yml
-y` on a freshly rendered template (template.yml for FC 2.0, template.fc3.yml for FC 3.0). Each test runs for both
generations. A stand-in `s` records its arguments; no real Serverless Devs is run."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from local.build import build
from local.deploy import DeployError, main, preflight
from tests.unit.test_template import DEPLOY_ENV


@pytest.fixture(params=["2", "3"], ids=["fc2", "fc3"])
def fc(request) -> str:
    return request.param


@pytest.fixture
def stage(tmp_path, fc) -> dict:
    out = tmp_path / "build"
    build(out, skip_deps=True, environ=DEPLOY_ENV, fc=fc)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "skip_deps": False}))  # as if built with wheels
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "s"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "s-args"}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    home = tmp_path / "home"
    (home / ".s").mkdir(parents=True)
    (home / ".s" / "access.yaml").write_text("default:\n  AccountID: '1234567890123456'\n")
    return {"out": out, "home": home, "path": f"{bin_dir}:/usr/bin:/bin", "args": tmp_path / "s-args", "fc": fc}


def test_it_runs_s_deploy_on_the_freshly_rendered_template(stage, monkeypatch):
    environ = {**DEPLOY_ENV, "PATH": stage["path"], "FC_REGION": "cn-beijing"}
    command = preflight(stage["out"], environ, home=stage["home"], fc=stage["fc"])
    assert command[1:] == ["deploy", "-t", str(stage["out"] / "template.yml"), "-y"]
    rendered = (stage["out"] / "template.yml").read_text()
    assert "region: cn-beijing" in rendered  # this shell's values
    assert DEPLOY_ENV["LEDGER_URL"] not in rendered
    assert ("edition: 3.0.0" in rendered) == (stage["fc"] == "3")
    assert ("component: fc3" in rendered) == (stage["fc"] == "3")
    policy = json.loads((stage["out"] / "ram-policy.json").read_text())
    invoked = next(s["Resource"] for s in policy["Statement"] if s["Action"] == ["fc:InvokeFunction"])
    assert all(arn.startswith("acs:fc:cn-beijing:1234567890123456:") for arn in invoked)
    monkeypatch.setattr("os.environ", {**environ})
    monkeypatch.setattr(Path, "home", lambda: stage["home"])
    assert main(["--out", str(stage["out"]), "--fc", stage["fc"]]) == 0
    assert stage["args"].read_text().split() == ["deploy", "-t", str(stage["out"] / "template.yml"), "-y"]


def test_a_package_built_for_the_other_generation_is_not_deployed(stage):
    other = "3" if stage["fc"] == "2" else "2"
    environ = {**DEPLOY_ENV, "PATH": stage["path"]}
    with pytest.raises(DeployError) as caught:
        preflight(stage["out"], environ, home=stage["home"], fc=other)
    (line,) = str(caught.value).splitlines()
    assert f"was built for FC {stage['fc']}.0, not FC {other}.0" in line and f"make deploy FC={stage['fc']}" in line


def test_each_missing_piece_is_one_clear_line(stage, tmp_path):
    environ = {k: v for k, v in DEPLOY_ENV.items() if k not in ("LEDGER_URL", "VPC_ID")}
    environ.update(PATH="/usr/bin:/bin", WEBHOOK_SECRET="")
    with pytest.raises(DeployError) as caught:
        preflight(tmp_path / "nothing-built", environ, home=tmp_path / "nobody", fc=stage["fc"])
    lines = str(caught.value).splitlines()
    build = "make build" if stage["fc"] == "2" else "make build FC=3"
    assert any(f"run `{build}` first" in line for line in lines)
    assert any("Serverless Devs CLI `s` is not on the PATH" in line and "npm install" in line for line in lines)
    assert any("no Serverless Devs credentials for the access alias 'default'" in line for line in lines)
    assert any(line.startswith("LEDGER_URL is not set") for line in lines)
    assert any("WEBHOOK_SECRET is not set but WEBHOOK_URL is" in line for line in lines)
    assert any("VPC_ID" in line and "no default" in line for line in lines)


def test_credentials_may_come_from_the_environment_and_another_alias(stage):
    environ = {**DEPLOY_ENV, "PATH": stage["path"], "S_ACCESS": "prod", "prod_serverless_devs_access": "{}"}
    command = preflight(stage["out"], environ, home=stage["out"], fc=stage["fc"])  # no access.yaml there
    assert command[-2:] == ["-a", "prod"]


def test_check_stops_before_s_and_a_failure_exits_2(stage, monkeypatch, capsys):
    monkeypatch.setattr("os.environ", {**DEPLOY_ENV, "PATH": stage["path"]})
    monkeypatch.setattr(Path, "home", lambda: stage["home"])
    fc = ["--fc", stage["fc"]]
    assert main(["--out", str(stage["out"]), "--check", *fc]) == 0 and not stage["args"].exists()
    monkeypatch.setattr("os.environ", {"PATH": stage["path"]})
    assert main(["--out", str(stage["out"]), *fc]) == 2
    assert "deploy: LEDGER_URL is not set" in capsys.readouterr().err
