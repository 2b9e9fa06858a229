"""`make build [DB=mysql|postgresql]`: ONE code package for the three functions, and the template that deploys it.

    build/
      code/            what FC loads, the same package for drainer, processor and sweep (codeUri ./code):
                       drainer.py, processor.py, sweep.py (functions/<name>/index.py, so the handlers are
                       drainer.handler, ...), shared/, and the runtime dependencies for FC's python3.10 runtime
                       (cp310 manylinux wheels for x86_64, glibc <= 2.28 as on FC's Debian 10, at the versions
                       the test venv has where 3.10 can have them), trimmed, with cp310 bytecode for the modules
                       the functions import when a Python 3.10 is at hand (it also proves they import under it)
      template.yml     template.yml rendered for Serverless Devs (local.fc.functions.render_template): values
                       from this environment, secrets left as ${env(NAME)} for `s` to read at deploy time
      ram-policy.json  the function role's policy and its trust policy (deploy/), with this template's values
      trust-policy.json
      manifest.json    database, distributions and versions, what was trimmed, sizes

The database driver is the backend's only: PyMySQL for `--db mysql` (the default), psycopg for `--db postgresql`;
SQLite is in the standard library. The operations CLI's dependencies (typer, and the rich and click it brings)
are never installed. Trimmed because FC never loads them: bytecode compiled by this machine's Python (not 3.10),
type stubs, C / Cython sources and headers, console scripts, test suites, the SQLAlchemy dialects of other
databases, Powertools utilities the code does not import, and pycryptodome (aliyun-mns-sdk declares it but never
imports it; cryptography, which aliyun-python-sdk-core and PyMySQL use, is the one crypto library shipped).
Native libraries are stripped of debug symbols when `strip` is on the PATH. `--skip-deps` lays out the code only
(no network), for tests of the layout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yml"
DEPLOY = ROOT / "deploy"
FUNCTIONS = ("drainer", "processor", "sweep")
CODE = "code"  # build/code: the one code package
DATABASES = ("mysql", "postgresql")
TARGET_BYTES = 40 * 1000 * 1000  # everything a function loads, unzipped
PYTHON_TAG = "cp310"  # FC python3.10
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")  # FC python3.10: Debian 10, glibc 2.28
PLATFORM = "manylinux_2_28 x86_64"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

# Secrets: never written into build/template.yml; `s` reads them from the environment when it deploys.
SECRET_VARIABLES = ("LEDGER_URL", "WEBHOOK_URL", "WEBHOOK_SECRET")

CLI_ONLY = ("typer",)  # the operations CLI (and the rich and click it brings) never runs on FC
SOURCE_ONLY = ("aliyun-fc2",)  # published as an sdist only; pure Python, so it is built here without its deps
FC2_NEEDS = ("requests", "websocket-client")  # aliyun-fc2's dependencies (it is installed with --no-deps)
DRIVERS = {"mysql": "pymysql", "postgresql": "psycopg"}  # the one DB-API driver per backend
DEV_ONLY = ("pytest", "ruff", "hypothesis", "typer", "click", "rich", "pyyaml", "xdist", "pytest-timeout")

# Distributions pip installs as dependencies that no module of the package imports.
DROPPED_DISTRIBUTIONS = {
    "pycryptodome": "aliyun-mns-sdk 1.3.0 declares it but imports nothing from Crypto; cryptography suffices",
    "pycparser": "cffi's C parser, for compiling cffi modules; cryptography loads only the built _cffi_backend",
}
# Parts of installed packages that nothing in the functions imports (paths relative to build/code).
DROPPED_PATHS = (
    "sqlalchemy/testing",  # SQLAlchemy's own test suite support
    "sqlalchemy/orm",  # the ledger is SQLAlchemy Core; no Core module imports the ORM
    "sqlalchemy/ext",  # asyncio, declarative, automap, mypy ...: nothing imports them
    "sqlalchemy/dialects/mssql",
    "sqlalchemy/dialects/oracle",
    "pydantic/mypy.py",
    "pydantic/v1",  # the pydantic 1 compatibility layer
    "aws_lambda_powertools/event_handler",
    *(
        f"aws_lambda_powertools/utilities/{name}"
        for name in (
            "auth_alpha",
            "circuit_breaker",
            "data_masking",
            "feature_flags",
            "idempotency",
            "kafka",
            "metadata",
            "parameters",
            "streaming",
            "validation",
        )
    ),
    "charset_normalizer/cli",
    "bin",  # console scripts
    "include",  # C headers
)
# The other backend's dialect; the mysql dialect stays in both (shared/adapters/ledger/schema.py imports its types).
DROPPED_DIALECTS = {"mysql": ("sqlalchemy/dialects/postgresql",), "postgresql": ()}
DROPPED_SUFFIXES = (".pyc", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp", ".hpp")
DROPPED_DIRECTORIES = ("__pycache__", "tests")
DROPPED_FILES = ("py.typed", "RECORD", "INSTALLER", "REQUESTED")  # pip's install records (after the removals)


class BuildError(Exception):
    pass


# ------------------------------------------------------------------------------------------- requirements


def runtime_requirements(db: str = "mysql") -> list[str]:
    """The functions' runtime dependencies (no extras, not the CLI's) with the database driver of `db` only, from
    the project's installed metadata (pyproject.toml: [project] dependencies, and the postgres extra)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    if db not in DATABASES:
        raise BuildError(f"DB must be one of {', '.join(DATABASES)} (got {db!r})")
    declared = [Requirement(r) for r in requires("flow-receipts") or []]
    base = [r for r in declared if r.marker is None and _name(r.name) not in CLI_ONLY]
    extra = [r for r in declared if r.marker is not None and r.marker.evaluate({"extra": "postgres"})]
    drivers = {_name(d) for d in DRIVERS.values()}
    chosen = [r for r in base if _name(r.name) not in drivers]
    pool = base + [Requirement(str(r).split(";")[0]) for r in extra]
    driver = [r for r in pool if _name(r.name) == DRIVERS[db]]
    if not driver:
        raise BuildError(f"pyproject.toml declares no {DRIVERS[db]} requirement for DB={db}")
    return [str(r) for r in chosen + driver[:1]]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tested_versions() -> dict[str, str]:
    """name -> version of every distribution in this (the test) environment: the build ships the same ones."""
    from importlib.metadata import distributions

    versions = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and _name(name) != "flow-receipts":
            versions[_name(name)] = dist.version
    return versions


def install_dependencies(target: Path, requirements: list[str]) -> dict[str, str]:
    """pip installs the requirements for FC's python3.10 (manylinux wheels: Debian 10 has glibc 2.28) into
    `target`, constrained to the versions of this environment where FC's Python can have them; returns the
    distributions whose tested version could not be pinned (name -> tested version; e.g. a release that needs
    Python 3.11). No bytecode: this machine's Python would compile it for the wrong version."""
    pinned = tested_versions()
    unpinnable: dict[str, str] = {}
    pip = [sys.executable, "-m", "pip", "install", "--no-compile", "--target", str(target)]
    pip += ["--disable-pip-version-check"]
    platform = ["--python-version", "3.10", "--implementation", "cp", "--only-binary=:all:"]
    platform += [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    wheels = [r for r in requirements if not r.startswith(SOURCE_ONLY)] + list(FC2_NEEDS)
    sources = [r for r in requirements if r.startswith(SOURCE_ONLY)]
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        for _ in range(len(pinned) + 1):
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pinned.items())))
            done = subprocess.run(
                [*pip, "--constraint", str(constraints), *platform, *wheels], capture_output=True, text=True
            )
            if done.returncode == 0:
                break
            conflict = re.search(r"\(constraint\) ([A-Za-z0-9_.-]+)==", done.stdout + done.stderr)
            if conflict is None or _name(conflict.group(1)) not in pinned:
                raise BuildError(f"pip could not install the dependencies:\n{_pip_error(done)}")
            name = _name(conflict.group(1))
            unpinnable[name] = pinned.pop(name)
        if sources:
            _run([*pip, "--constraint", str(constraints), "--no-deps", *sources])
    return unpinnable


def _pip_error(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout).splitlines()
    return "\n".join(line for line in lines if "is ignored" not in line)[-3000:]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command[:5])} ... failed:\n{_pip_error(done)}")


# ------------------------------------------------------------------------------------------------- trimming


def installed_distributions(target: Path) -> dict[str, tuple[str, Path]]:
    """name -> (version, dist-info directory) of what pip installed into `target`."""
    found = {}
    for info in target.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, re.M)
        version = re.search(r"^Version: (.+)$", metadata, re.M)
        if name and version:
            found[_name(name.group(1).strip())] = (version.group(1).strip(), info)
    return found


def remove_distribution(target: Path, info: Path) -> int:
    """Deletes every file the distribution's RECORD lists (its dist-info included); returns the bytes freed."""
    freed = 0
    for line in (info / "RECORD").read_text().splitlines():
        relative = line.rsplit(",", 2)[0] if line else ""
        path = (target / relative).resolve()
        if relative and path.is_file() and target.resolve() in path.parents:
            freed += path.stat().st_size
            path.unlink()
    for directory in sorted({p for p in target.rglob("*") if p.is_dir()}, key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    if info.exists():
        freed += _bytes(info)
        shutil.rmtree(info)
    return freed


def trim(code: Path, db: str) -> dict[str, int]:
    """Removes what FC never loads from the installed dependencies; returns what was removed -> bytes."""
    removed: dict[str, int] = {}
    installed = installed_distributions(code)
    for name, why in DROPPED_DISTRIBUTIONS.items():
        if name not in installed:
            continue
        importer = _importer_of(code, "Crypto") if name == "pycryptodome" else None
        if importer:
            raise BuildError(f"{importer} imports Crypto: pycryptodome ({why}) can no longer be dropped")
        removed[f"{name} (distribution)"] = remove_distribution(code, installed[name][1])
    for relative in (*DROPPED_PATHS, *DROPPED_DIALECTS[db]):
        path = code / relative
        if path.exists():
            removed[relative] = _bytes(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(code.rglob("*"), key=lambda p: -len(p.parts)):
        if not path.exists() or path.is_relative_to(code / "shared"):
            continue
        kind = None
        if path.is_dir() and (path.name in DROPPED_DIRECTORIES or path.name.endswith("-stubs")):
            kind = path.name if path.name in DROPPED_DIRECTORIES else "*-stubs"
        elif path.is_file() and (path.suffix in DROPPED_SUFFIXES or path.name in DROPPED_FILES):
            kind = path.suffix or path.name
        if kind:
            removed[kind] = removed.get(kind, 0) + _bytes(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    stripped = strip_native(code)
    if stripped:
        removed["debug symbols (strip)"] = stripped
    return removed


def _importer_of(code: Path, package: str) -> str | None:
    pattern = re.compile(rf"^\s*(?:from|import)\s+{package}\b", re.M)
    for source in code.rglob("*.py"):
        if source.relative_to(code).parts[0] != package and pattern.search(source.read_text(errors="replace")):
            return str(source.relative_to(code))
    return None


def strip_native(code: Path) -> int:
    """Strips debug symbols from the native libraries (wheels ship some with them); bytes saved, 0 without strip."""
    tool = shutil.which("strip")
    if tool is None:
        return 0
    saved = 0
    for library in code.rglob("*.so*"):
        if library.is_file() and not library.is_symlink():
            before = library.stat().st_size
            if subprocess.run([tool, "--strip-unneeded", str(library)], capture_output=True).returncode == 0:
                saved += before - library.stat().st_size
    return saved


def find_python310() -> str | None:
    """FC's Python, 3.10, on this machine: $FC_PYTHON, python3.10 on the PATH, or a pyenv installation."""
    candidates = [os.environ.get("FC_PYTHON", ""), shutil.which("python3.10") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    candidates += ["/usr/bin/python3.10", "/usr/local/bin/python3.10"]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


PROBE = Path(__file__).resolve().with_name("probe.py")
PROBE_URLS = {
    "mysql": "mysql+pymysql://probe:probe@127.0.0.1:9/probe",  # an engine is built, never connected
    "postgresql": "postgresql+psycopg://probe:probe@127.0.0.1:9/probe",
}


STUBS = {  # what a ${env(NAME)} left for `s` stands for when the package is probed here
    "FC_ACCOUNT_ID": "1234567890123456",
    "ALICOM_QUEUE_NAME": "Alicom-Queue-1234567890123456-FlowReport",
    "WEBHOOK_URL": "",  # a webhook needs its secret too: probed without notifications
    "WEBHOOK_SECRET": "",
}


def probe_environment(document: Mapping[str, Any], db: str) -> dict[str, str]:
    """The functions' variables from a rendered template, each ${env(NAME)} replaced by a stub value."""
    from local.template_rules import DEPLOY_TIME

    stubs = {**STUBS, "LEDGER_URL": PROBE_URLS[db]}
    environment: dict[str, str] = {}
    for entry in document["services"].values():
        for name, value in (entry["props"]["function"].get("environmentVariables") or {}).items():
            environment[name] = DEPLOY_TIME.sub(lambda m: stubs.get(m.group(1), "stub"), str(value))
    return environment


def run_probe(python: str, code: Path, environment: Mapping[str, str], *args: str) -> dict[str, Any]:
    """local/probe.py inside the package under `python` (isolated: nothing but the package on its path)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(code), "TMPDIR": tempfile.gettempdir()}
    env.update(environment)
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", PROBE.read_text(), *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise BuildError(f"the package does not import under {python}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_imported(python: str, code: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    """Imports and initialises the three functions under FC's Python inside the package, then compiles what they
    imported to cp310 bytecode (unchecked-hash: FC's /code is read-only, so Python can never cache bytecode there,
    and the zip's timestamps do not matter). Returns what the probe saw."""
    seen = run_probe(python, code, environment, "modules", *FUNCTIONS)
    done = subprocess.run(
        [python, "-I", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", "-i", "-"],
        cwd=code,
        input="\n".join(seen["files"]) + "\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise BuildError(f"compileall failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seen


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------------------------------------- code, template


def copy_code(code: Path) -> None:
    """shared/ and each function's index.py as <function>.py at the top of the package."""
    shutil.copytree(ROOT / "shared", code / "shared", ignore=IGNORED, dirs_exist_ok=True)
    for name in FUNCTIONS:
        module = code / f"{name}.py"
        if module.exists() or (code / name).exists():
            raise BuildError(f"a dependency installed a top-level {name!r}: it would shadow the {name} handler")
        shutil.copyfile(ROOT / "functions" / name / "index.py", module)


def built_template(environ: Mapping[str, str], *, strict: bool = False) -> dict[str, Any]:
    """template.yml as Serverless Devs should deploy it: rendered from `environ` (strict: every variable without a
    default must be set), each function's codeUri the one package and its handler and initializer in
    <function>.py. Raises BuildError naming every problem the fc component would refuse."""
    from local.fc.functions import TemplateError, render_template
    from local.template_rules import check_template

    try:
        document = render_template(TEMPLATE, environ, keep=SECRET_VARIABLES, strict=strict, unresolved="reference")
    except TemplateError as exc:
        raise BuildError(str(exc)) from None
    for key, entry in document["services"].items():
        function = (entry.get("props") or {}).get("function") or {}
        source = Path(str(function.get("codeUri", "")))
        if source.parent != Path("functions") or source.name not in FUNCTIONS:
            raise BuildError(f"services.{key}: codeUri must be ./functions/<one of {', '.join(FUNCTIONS)}>")
        function["codeUri"] = f"./{CODE}"
        for hook in ("handler", "initializer"):
            if hook in function:
                module, _, attribute = str(function[hook]).rpartition(".")
                if module != "index":
                    raise BuildError(f"services.{key}: {hook} must be index.<function> in {source}/index.py")
                function[hook] = f"{source.name}.{attribute}"
    problems = check_template(document)
    if problems:
        raise BuildError("template.yml: the fc component would refuse it:\n  " + "\n  ".join(problems))
    return document


def write_template(out: Path, document: Mapping[str, Any]) -> Path:
    import yaml

    header = (
        "# Rendered from template.yml by `make build` / `make deploy` (local/build.py); do not edit, re-render.\n"
        "# ${env(NAME)} references are read by `s` from the environment at deploy time (secrets stay there).\n"
        "# Deploy: make deploy   (runs: s deploy -t build/template.yml -y)\n"
    )
    path = out / "template.yml"
    path.write_text(header + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=120))
    return path


def template_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the policies need from a rendered template: region, account, service, functions, queues, logs."""
    services = document["services"]
    props = [entry["props"] for entry in services.values()]
    service = props[0]["service"]
    functions = {p["function"]["name"]: p["function"] for p in props}
    role = str(service.get("role", ""))
    account = role.split(":")[3] if role.count(":") >= 4 else ""
    failure = next(
        (
            str(f["asyncConfiguration"]["destination"]["onFailure"])
            for f in functions.values()
            if (f.get("asyncConfiguration") or {}).get("destination", {}).get("onFailure")
        ),
        "",
    )
    sweep_env = (functions.get("sweep") or {}).get("environmentVariables") or {}
    return {
        "region": props[0]["region"],
        "account_id": account,
        "service": service["name"],
        "functions": sorted(functions),
        "log": service.get("logConfig") or {},
        "failure_destination": failure,
        "flow_api": sweep_env.get("FLOW_API", "charge"),
        "not_found": sweep_env.get("SWEEP_NOT_FOUND", "resubmit"),
        "self_invoke": str(sweep_env.get("SWEEP_SELF_INVOKE", "")).lower() == "true",
    }


def render_policy(document: Mapping[str, Any]) -> dict[str, Any]:
    """deploy/ram-policy.json with the template's values: ${region}, ${account_id}, ${service}, ${dlq},
    ${log_project}, ${log_store}; the flow API statement keeps only FLOW_API's two actions (and only the status
    query when SWEEP_NOT_FOUND never re-submits)."""
    from local.fc.functions import MNS_QUEUE_ARN

    values = template_values(document)
    queue = MNS_QUEUE_ARN.match(values["failure_destination"])
    fills = {
        "region": values["region"],
        "account_id": values["account_id"],
        "service": values["service"],
        "dlq": queue.group(1) if queue else "",
        "log_project": str(values["log"].get("project", "")),
        "log_store": str(values["log"].get("logstore", "")),
    }
    text = (DEPLOY / "ram-policy.json").read_text()
    policy = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: fills.get(m.group(1), m.group(0)), text))
    wanted = flow_actions(values["flow_api"], resubmits=values["not_found"] == "resubmit")
    for statement in policy["Statement"]:
        actions = statement["Action"]
        if all(a.startswith("dycdpapi:") for a in actions):
            statement["Action"] = [a for a in actions if a in wanted]
    return policy


def flow_actions(flow_api: str, *, resubmits: bool) -> set[str]:
    """The flow API's RAM actions the sweep calls: its status query, and its top-up when it re-submits."""
    from shared.adapters.flow import ANSWER_SHAPES

    shape = ANSWER_SHAPES.get(flow_api)  # type: ignore[call-overload]
    if shape is None:
        return set()
    return {f"dycdpapi:{shape.query_action}"} | ({f"dycdpapi:{shape.place_action}"} if resubmits else set())


def write_policies(out: Path, document: Mapping[str, Any]) -> None:
    (out / "ram-policy.json").write_text(json.dumps(render_policy(document), indent=2) + "\n")
    shutil.copyfile(DEPLOY / "trust-policy.json", out / "trust-policy.json")


# ---------------------------------------------------------------------------------------------------- build


def build(
    out: Path,
    *,
    db: str = "mysql",
    skip_deps: bool = False,
    bytecode: str = "auto",
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Builds into `out` (replaced); returns the manifest (also written to out/manifest.json). `bytecode`: "yes"
    (needs a Python 3.10), "no", or "auto" (when one is found; see find_python310)."""
    environ = os.environ if environ is None else environ
    requirements = runtime_requirements(db)
    document = built_template(environ)  # first: a template the component would refuse stops the build at once
    if out.exists():
        shutil.rmtree(out)
    code = out / CODE
    code.mkdir(parents=True)
    removed: dict[str, int] = {}
    unpinnable: dict[str, str] = {}
    if not skip_deps:
        unpinnable = install_dependencies(code, requirements)
        removed = trim(code, db)
    copy_code(code)
    python = find_python310() if bytecode != "no" else None
    if bytecode == "yes" and python is None:
        raise BuildError("--bytecode yes needs a Python 3.10 (set FC_PYTHON, or put python3.10 on the PATH)")
    probed: dict[str, Any] = {}
    if python is not None and not skip_deps:
        probed = compile_imported(python, code, probe_environment(document, db))
    write_template(out, document)
    write_policies(out, document)
    leaked = dev_only_content(code)
    if leaked:
        raise BuildError(f"development-only content in the build: {', '.join(leaked)}")
    distributions = {name: version for name, (version, _) in sorted(installed_distributions(code).items())}
    size = _bytes(code)
    manifest = {
        "db": db,
        "python": PYTHON_TAG,
        "platform": PLATFORM,
        "skip_deps": skip_deps,
        "requirements": requirements,
        "distributions": distributions,
        "not_as_tested": {
            name: {"tested": tested, "shipped": distributions.get(name, "")} for name, tested in unpinnable.items()
        },
        "removed_bytes": dict(sorted(removed.items(), key=lambda kv: -kv[1])),
        "bytecode": (
            f"cp310 unchecked-hash for the {len(probed['files'])} modules the functions import ({python})"
            if probed
            else "none" + ("" if skip_deps else " (no Python 3.10 found: FC compiles at every cold start)")
        ),
        "imported_under": probed.get("python", ""),
        "resident_kb_after_init": probed.get("rss_kb", 0),
        "unzipped_bytes": size,
        "zipped_bytes": zipped_size(code),
        "files": sum(1 for p in code.rglob("*") if p.is_file()),
        "target_bytes": TARGET_BYTES,
        "largest": largest(code),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def dev_only_content(code: Path) -> list[str]:
    """Development-only packages or folders found in the code package (must be none)."""
    found = [name for name in installed_distributions(code) if name in DEV_ONLY]
    for folder in ("local", "tests", "cli", "bench", "functions", "pytest", "_pytest", "ruff", "hypothesis", "yaml"):
        if (code / folder).exists():
            found.append(f"{folder}/")
    return found


def zipped_size(code: Path) -> int:
    """Bytes of the code package zipped with deflate, as Serverless Devs uploads it."""
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(code.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(code))
        return handle.tell()


def largest(code: Path, count: int = 12) -> dict[str, int]:
    sizes = {entry.name: _bytes(entry) for entry in code.iterdir() if not entry.name.endswith(".dist-info")}
    sizes["*.dist-info"] = sum(_bytes(entry) for entry in code.glob("*.dist-info"))
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:count])


def report(manifest: Mapping[str, Any], out: Path) -> str:
    mb = 1000 * 1000
    size, target = manifest["unzipped_bytes"], manifest["target_bytes"]
    verdict = "within" if size <= target else "OVER"
    lines = [
        f"built {out / CODE} for {', '.join(FUNCTIONS)} (DB={manifest['db']}, {manifest['python']} {PLATFORM}"
        + (", code only: --skip-deps)" if manifest["skip_deps"] else ")"),
        f"  unzipped {size / mb:.1f} MB in {manifest['files']} files ({verdict} the {target / mb:.0f} MB target), "
        f"zipped {manifest['zipped_bytes'] / mb:.1f} MB",
    ]
    lines.append(f"  bytecode: {manifest['bytecode']}")
    for name, versions in manifest["not_as_tested"].items():
        if versions["shipped"]:
            lines.append(
                f"  note: {name} {versions['shipped']} shipped; the tests ran {versions['tested']} (not for 3.10)"
            )
    if manifest["removed_bytes"]:
        trimmed = sum(manifest["removed_bytes"].values())
        top = ", ".join(f"{k} {v / mb:.1f}" for k, v in list(manifest["removed_bytes"].items())[:5])
        lines.append(f"  trimmed {trimmed / mb:.1f} MB ({top}, ...)")
    lines.append("  largest: " + ", ".join(f"{k} {v / mb:.1f}" for k, v in manifest["largest"].items() if v > mb / 2))
    lines.append(f"  {out / 'template.yml'}, {out / 'ram-policy.json'}, {out / 'trust-policy.json'}")
    lines.append("deploy with: make deploy   (s deploy -t build/template.yml -y)")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--db", choices=DATABASES, default="mysql", help="the ledger backend whose driver is shipped")
    parser.add_argument("--skip-deps", action="store_true", help="code only (e.g. to check the layout offline)")
    parser.add_argument(
        "--bytecode", choices=("auto", "yes", "no"), default="auto", help="compile what is imported, under 3.10"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        manifest = build(args.out, db=args.db, skip_deps=args.skip_deps, bytecode=args.bytecode)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(report(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
