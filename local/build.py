"""`make build`: one deployable code directory per function, and a template that points at them.

build/<function>/ holds the function's index.py, the shared/ package and (unless --skip-deps) the runtime
dependencies installed for FC's python3.10 on manylinux x86_64; build/template.yml is template.yml with each
codeUri rewritten to its build directory. Deploy with `s deploy -t build/template.yml -y`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("drainer", "processor", "sweep")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
CODE_URI = re.compile(r"codeUri: \./functions/(\w+)")


CLI_ONLY = ("typer",)  # the operations CLI (and the rich and click it brings) never runs on FC


def runtime_requirements() -> list[str]:
    """The functions' runtime dependencies (no extras, not the CLI's), from the project's installed metadata."""
    from importlib.metadata import requires

    return [r for r in requires("flow-receipts") or [] if "extra ==" not in r and not r.startswith(CLI_ONLY)]


SOURCE_ONLY = ("aliyun-fc2",)  # published as an sdist only; pure Python, so it is built here without its deps


def install_dependencies(target: Path) -> None:
    requirements = runtime_requirements()
    wheels = [r for r in requirements if not r.startswith(SOURCE_ONLY)] + ["requests", "websocket-client"]  # fc2 needs
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)]
    platform = ["--python-version", "3.10", "--platform", "manylinux2014_x86_64", "--implementation", "cp"]
    subprocess.run([*pip, *platform, "--only-binary=:all:", *wheels], check=True)
    subprocess.run([*pip, "--no-deps", *[r for r in requirements if r.startswith(SOURCE_ONLY)]], check=True)


def build(out: Path, skip_deps: bool) -> None:
    if out.exists():
        shutil.rmtree(out)
    for name in FUNCTIONS:
        code = out / name
        shutil.copytree(ROOT / "functions" / name, code, ignore=IGNORED)
        shutil.copytree(ROOT / "shared", code / "shared", ignore=IGNORED)
        if not skip_deps:
            install_dependencies(code)
    template = CODE_URI.sub(lambda m: f"codeUri: ./{m.group(1)}", (ROOT / "template.yml").read_text())
    (out / "template.yml").write_text(template)
    print(f"built {', '.join(FUNCTIONS)} in {out}; deploy with: s deploy -t {out / 'template.yml'} -y")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--skip-deps", action="store_true", help="code only (e.g. to check the layout offline)")
    args = parser.parse_args(argv)
    build(args.out, args.skip_deps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
