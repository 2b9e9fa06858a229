"""`make deploy [FC=2|3]`: `s deploy -t build/template.yml -y`, after checking what it needs.

1. the code package from `make build` (build/code, with its dependencies) for the same FC generation (FC=2:
   template.yml, FC 2.0; FC=3: template.fc3.yml, FC 3.0), so an FC 2.0 package is never deployed as FC 3.0;
2. the Serverless Devs CLI `s` on the PATH;
3. credentials for the template's access alias (`s config add ... -a default`, or the environment variable
   `<alias>_serverless_devs_access` that Serverless Devs reads);
4. every environment variable the template needs without a default (FC_ACCOUNT_ID, ALICOM_QUEUE_NAME,
   SLS_PROJECT, VPC_ID, VSWITCH_ID, SECURITY_GROUP_ID, LEDGER_URL), and a webhook secret with a webhook URL.

Then it renders build/template.yml (and build/ram-policy.json) again from this environment and the FC generation's
template, so what `s` deploys
is what the shell says now, and runs `s`. Each missing piece is one clear line and exit status 2; `--check` stops
before running `s`. CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from local.build import CODE, FC_APIS, ROOT, BuildError, built_template, write_policies, write_template

REQUIRED_SECRET = "LEDGER_URL"  # the only secret without which nothing works (the default is SQLite on /tmp)


class DeployError(Exception):
    pass


def access_alias(environ: Mapping[str, str]) -> str:
    return environ.get("S_ACCESS") or "default"


def has_credentials(alias: str, environ: Mapping[str, str], home: Path) -> bool:
    """Serverless Devs keeps keys in ~/.s/access.yaml (`s config add`), or reads <alias>_serverless_devs_access."""
    if environ.get(f"{alias}_serverless_devs_access"):
        return True
    access = home / ".s" / "access.yaml"
    try:
        import yaml

        keys = yaml.safe_load(access.read_text()) or {}
    except (OSError, ValueError):
        return False
    return isinstance(keys, dict) and alias in keys


def preflight(out: Path, environ: Mapping[str, str], *, home: Path | None = None, fc: str = "2") -> list[str]:
    """What `s deploy` would run with for FC `fc`; raises DeployError with one line per missing piece."""
    home = Path.home() if home is None else home
    problems = []
    build = "make build" if fc == "2" else f"make build FC={fc}"
    if fc not in FC_APIS:
        raise DeployError(f"FC must be one of {', '.join(FC_APIS)} (got {fc!r})")
    manifest = out / "manifest.json"
    try:
        built = json.loads(manifest.read_text())
    except (OSError, ValueError):
        built = None
    if built is None or not (out / CODE).is_dir():
        problems.append(f"no code package in {out / CODE}: run `{build}` first (DB=mysql or DB=postgresql)")
    elif built.get("skip_deps"):
        problems.append(f"{out / CODE} was built with --skip-deps (no dependencies): run `{build}`")
    elif str(built.get("fc", "2")) != fc:
        problems.append(
            f"{out / CODE} was built for FC {built.get('fc', '2')}.0, not FC {fc}.0: run `{build}`, or "
            f"`make deploy FC={built.get('fc', '2')}`"
        )
    s = shutil.which("s", path=environ.get("PATH"))
    if s is None:
        problems.append(
            "the Serverless Devs CLI `s` is not on the PATH: install it with `npm install -g @serverless-devs/s` "
            "(Node.js 14 or later)"
        )
    alias = access_alias(environ)
    if not has_credentials(alias, environ, home):
        problems.append(
            f"no Serverless Devs credentials for the access alias {alias!r}: run `s config add --AccessKeyID <id> "
            f"--AccessKeySecret <secret> --AccountID <account id> -a {alias}` (S_ACCESS picks another alias)"
        )
    if not (environ.get(REQUIRED_SECRET) or "").strip():
        problems.append(f"{REQUIRED_SECRET} is not set: the ledger's database URL, e.g. mysql+pymysql://user:...")
    if (environ.get("WEBHOOK_URL") or "").strip() and not (environ.get("WEBHOOK_SECRET") or "").strip():
        problems.append("WEBHOOK_SECRET is not set but WEBHOOK_URL is: every delivery is signed")
    try:
        document = built_template(environ, strict=True, fc=fc)
    except BuildError as exc:
        problems.append(str(exc))
        document = None
    if problems:
        raise DeployError("\n".join(problems))
    assert document is not None and s is not None
    write_template(out, document)
    write_policies(out, document)
    command = [s, "deploy", "-t", str(out / "template.yml"), "-y"]
    return command + (["-a", alias] if alias != "default" else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="the build directory (make build)")
    parser.add_argument(
        "--fc", choices=FC_APIS, default="2", help="2: FC 2.0 (template.yml), 3: FC 3.0 (template.fc3.yml)"
    )
    parser.add_argument("--check", action="store_true", help="check and render, do not run s")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        command = preflight(args.out, os.environ, fc=args.fc)
    except DeployError as exc:
        for line in str(exc).splitlines():
            print(f"deploy: {line}", file=sys.stderr)
        return 2
    print(f"deploy: {' '.join(command)}", file=sys.stderr)
    if args.check:
        return 0
    return subprocess.run(command, cwd=args.out).returncode


if __name__ == "__main__":
    sys.exit(main())
