"""`make lock`: the functions' runtime dependencies pinned with their sha256, one lock per build flavour.

    requirements/fc2-mysql.lock       make build [FC=2] [DB=mysql]
    requirements/fc2-postgresql.lock  make build DB=postgresql
    requirements/fc3-mysql.lock       make build FC=3             (the fc3 extra, without aliyun-fc2)
    requirements/fc3-postgresql.lock  make build FC=3 DB=postgresql

Each lock is what pip resolves for FC's python3.10 (CPython 3.10, manylinux_2_28 / manylinux2014 x86_64, wheels
only) from pyproject.toml's runtime requirements of that flavour (local.build.runtime_requirements), at the versions
this (the test) environment has wherever Python 3.10 can have them, and the sha256 of the one file pip picked for
each: `pip install --dry-run --ignore-installed --report` against the package index reports the files and their
hashes without installing anything. The resolution runs under a Python 3.10 (local.build.find_python310): pip
evaluates environment markers with the interpreter that runs it (aiohttp needs async-timeout below 3.11 only).
aliyun-fc2 is published as an sdist only: its sdist is pinned (by hash) and
`make build` builds it (pure Python) without its dependencies, whose wheels the lock pins beside it.

`make build` installs from the lock with `pip install --require-hashes --no-deps`, so a build is the same files
whenever and wherever it runs, and refuses a lock that no longer agrees with pyproject.toml (a runtime requirement
missing from it, or pinned outside its specifier): rerun `make lock` after changing the dependencies.
`python -m local.lock --check` says whether the locks agree, without the network.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local.build import (
    DATABASES,
    FC2_NEEDS,
    FC_APIS,
    PLATFORMS,
    ROOT,
    SOURCE_ONLY,
    BuildError,
    _name,
    _pip_error,
    find_python310,
    runtime_requirements,
    tested_versions,
)

LOCK_DIR = ROOT / "requirements"
FLAVOURS = tuple((fc, db) for fc in FC_APIS for db in DATABASES)
PYTHON_VERSION = "3.10"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class LockError(BuildError):
    pass


@dataclass(frozen=True)
class Pin:
    name: str  # normalised (PEP 503)
    version: str
    hashes: tuple[str, ...]
    source: bool = False  # an sdist, built by `make build` (SOURCE_ONLY)


def lock_path(db: str = "mysql", fc: str = "2", directory: Path | None = None) -> Path:
    return (LOCK_DIR if directory is None else directory) / f"fc{fc}-{db}.lock"


def target_platform() -> list[str]:
    """pip's options for FC's python3.10: CPython 3.10 wheels for manylinux x86_64 (Debian 10: glibc 2.28)."""
    options = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]
    return options + [arg for tag in PLATFORMS for arg in ("--platform", tag)]


# ------------------------------------------------------------------------------------------------ reading


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> Pin of a lock file (pip's requirements format: `name==version \\ --hash=sha256:...`)."""
    try:
        text = path.read_text()
    except OSError:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        raise LockError(f"{shown} is missing: run `make lock`") from None
    pins: dict[str, Pin] = {}
    sources = set()
    for line in text.splitlines():
        found = re.match(r"^# source: (\S+)", line)
        if found:
            sources.add(_name(found.group(1)))
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        pin = _PIN.match(entry)
        if pin is None:
            raise LockError(f"{path}: not a pinned requirement: {entry[:80]!r}")
        name = _name(pin.group(1))
        pins[name] = Pin(name, pin.group(2), tuple(_HASH.findall(entry)), name in sources)
    return pins


def lock_problems(pins: Mapping[str, Pin], requirements: Iterable[str]) -> list[str]:
    """How a lock disagrees with the requirements it must satisfy (one line each; [] when it agrees): a requirement
    missing from it, a pinned version outside a requirement's specifier, a pin without a hash."""
    from packaging.requirements import Requirement

    problems = []
    for text in requirements:
        requirement = Requirement(text)
        name = _name(requirement.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement}: the lock pins {name}=={pin.version}")
    problems += [f"{pin.name}=={pin.version} has no sha256" for pin in pins.values() if not pin.hashes]
    return problems


def check_lock(db: str = "mysql", fc: str = "2", directory: Path | None = None) -> Path:
    """The flavour's lock, after checking it agrees with pyproject.toml; LockError naming the fix otherwise."""
    path = lock_path(db, fc, directory)
    problems = lock_problems(read_lock(path), runtime_requirements(db, fc))
    if problems:
        raise LockError(
            f"{path.name} does not agree with pyproject.toml (run `make lock`):\n  " + "\n  ".join(problems)
        )
    return path


# ------------------------------------------------------------------------------------------------ writing


def resolver_python() -> str:
    """The Python 3.10 whose pip resolves the locks: pip evaluates environment markers (`async-timeout;
    python_version < "3.11"`, which aiohttp needs on 3.10) with the interpreter that runs it, whatever
    --python-version says, so the resolution must run under FC's Python version."""
    python = find_python310()
    if python is None:
        raise LockError(
            "make lock needs a Python 3.10 (FC_PYTHON, python3.10 on the PATH, or pyenv): pip evaluates markers such "
            "as python_version < '3.11' with the interpreter that runs it"
        )
    return python


def _dry_run(arguments: list[str], constraints: Path, python: str) -> list[dict]:
    """pip's resolution (`--dry-run --report`) under `python`: one entry per distribution it would install."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--target", str(Path(scratch) / "target")]  # pip < 23.1 wants it with --platform; not written
        command += ["--disable-pip-version-check", "--report", str(report), "--constraint", str(constraints)]
        done = subprocess.run([*command, *arguments], capture_output=True, text=True)
        if done.returncode != 0:
            raise _Refused(done)
        return json.loads(report.read_text())["install"]


class _Refused(Exception):
    def __init__(self, done: subprocess.CompletedProcess) -> None:
        super().__init__(_pip_error(done))
        self.output = done.stdout + done.stderr


def resolve(requirements: list[str], pinned: Mapping[str, str] | None = None) -> tuple[list[Pin], dict[str, str]]:
    """The pins for `requirements` on FC's python3.10, constrained to `pinned` (default: this environment's
    versions) wherever Python 3.10 can have them; returns them and the versions that could not be kept (name ->
    this environment's version, e.g. a release that needs Python 3.11)."""
    pinned = dict(tested_versions() if pinned is None else pinned)
    python = resolver_python()
    unpinnable: dict[str, str] = {}
    wheels = [r for r in requirements if not r.startswith(SOURCE_ONLY)]
    sources = [r for r in requirements if r.startswith(SOURCE_ONLY)]
    if sources:
        wheels += list(FC2_NEEDS)  # aliyun-fc2's dependencies: it is installed without them (--no-deps)
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        for _ in range(len(pinned) + 1):
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pinned.items())))
            try:
                found = _dry_run([*target_platform(), *wheels], constraints, python)
                built = _dry_run(["--no-deps", *sources], constraints, python) if sources else []
                break
            except _Refused as refused:
                conflict = re.search(r"\(constraint\) ([A-Za-z0-9_.-]+)==", refused.output)
                if conflict is None or _name(conflict.group(1)) not in pinned:
                    raise LockError(f"pip could not resolve the dependencies:\n{refused}") from None
                name = _name(conflict.group(1))
                unpinnable[name] = pinned.pop(name)
        else:  # pragma: no cover - every constraint was dropped and pip still refuses
            raise LockError("pip could not resolve the dependencies")
    pins = [_pin(entry, source=False) for entry in found] + [_pin(entry, source=True) for entry in built]
    return sorted(pins, key=lambda pin: pin.name), unpinnable


def _pin(entry: Mapping, *, source: bool) -> Pin:
    metadata, download = entry["metadata"], entry.get("download_info") or {}
    hashes = (download.get("archive_info") or {}).get("hashes") or {}
    name = _name(metadata["name"])
    if "sha256" not in hashes:
        raise LockError(f"pip reported no sha256 for {name} {metadata['version']} ({download.get('url', '?')})")
    return Pin(name, metadata["version"], (hashes["sha256"],), source)


def render_lock(fc: str, db: str, requirements: list[str], pins: list[Pin], unpinnable: Mapping[str, str]) -> str:
    generation = {"2": "FC 2.0 (fc2)", "3": "FC 3.0 (the fc3 extra, no aliyun-fc2)"}[fc]
    lines = [
        f"# The runtime dependencies of `make build FC={fc} DB={db}`: {generation}, the {db} driver.",
        f"# For CPython {PYTHON_VERSION} on {' / '.join(PLATFORMS)} (FC's python3.10), wheels only except where",
        "# marked `source`; installed with `pip install --require-hashes --no-deps`. Generated from pyproject.toml",
        "# by `make lock` (python -m local.lock) at the versions the tests ran where Python 3.10 can have them;",
        "# do not edit, rerun `make lock`. Requirements:",
        *(f"#   {requirement}" for requirement in requirements),
    ]
    lines += [f"# not as tested: {name} (the tests ran {version})" for name, version in sorted(unpinnable.items())]
    for pin in pins:
        if pin.source:
            lines.append(f"# source: {pin.name} (published as an sdist only; pure Python, built by `make build`)")
        lines.append(f"{pin.name}=={pin.version} \\")
        lines += [f"    --hash=sha256:{digest}" for digest in pin.hashes[:-1]]
        lines[-1] += " \\" if len(pin.hashes) > 1 else ""
        lines.append(f"    --hash=sha256:{pin.hashes[-1]}")
    return "\n".join(lines) + "\n"


def write_locks(directory: Path | None = None, flavours: Iterable[tuple[str, str]] = FLAVOURS) -> list[Path]:
    written = []
    for fc, db in flavours:
        requirements = runtime_requirements(db, fc)
        pins, unpinnable = resolve(requirements)
        text = render_lock(fc, db, requirements, pins, unpinnable)
        path = lock_path(db, fc, directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        problems = lock_problems(read_lock(path), requirements)
        if problems:  # pragma: no cover - pip honours the specifiers it resolved
            raise LockError(f"{path.name}: " + "; ".join(problems))
        written.append(path)
        notes = "".join(f", {name} not as tested" for name in unpinnable)
        print(f"lock: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(pins)} pins{notes}")
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.lock", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=LOCK_DIR, help="where the lock files go (requirements/)")
    parser.add_argument("--check", action="store_true", help="only check that the locks agree with pyproject.toml")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        if args.check:
            for fc, db in FLAVOURS:
                check_lock(db, fc, args.dir)
            print(f"lock: the {len(FLAVOURS)} locks in {args.dir} agree with pyproject.toml")
        else:
            write_locks(args.dir)
    except BuildError as exc:
        print(f"lock failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
