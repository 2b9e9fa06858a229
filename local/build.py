"""`make build [DB=mysql|postgresql] [FC=2|3]`: ONE code package for the three functions, and the template that
deploys it.

    build/
      code/            what FC loads, the same package for drainer, processor and sweep (codeUri / code ./code):
                       drainer.py, processor.py, sweep.py (functions/<name>/index.py, so the handlers are
                       drainer.handler, ...), shared/, and the runtime dependencies for FC's python3.10 runtime
                       installed from requirements/fc<FC>-<DB>.lock with `pip install --require-hashes --no-deps`
                       (cp310 manylinux wheels for x86_64, glibc <= 2.28 as on FC's Debian 10, pinned by `make lock`
                       at the versions the test venv has where 3.10 can have them: local/lock.py), trimmed, with
                       cp310 bytecode for the modules the functions import when a Python 3.10 is at hand (it also
                       proves they import under it)
      template.yml     FC=2: template.yml (edition 1.0.0, component fc) rendered for Serverless Devs
                       (local.fc.functions.render_template); FC=3: template.fc3.yml (edition 3.0.0, component fc3)
                       rendered the same way (render_fc3_template). Values from this environment, secrets left as
                       ${env(NAME)} (FC=3: ${env('NAME')}) for `s` to read at deploy time
      ram-policy.json  the function role's policy and its trust policy (deploy/), with this template's values
      trust-policy.json (FC=3: fc:InvokeFunction on the FC 3.0 functions, acs:fc:<region>:<account>:functions/<fn>)
      manifest.json    FC generation, database, lock, distributions and versions, what was trimmed, sizes

FC=2 (the default) ships aliyun-fc2 for async dispatch; FC=3 ships the `fc3` extra (alibabacloud_fc20230330, the
FC 3.0 SDK) and not aliyun-fc2: the functions import the SDK of FUNCTION_COMPUTE_API only
(shared/adapters/dispatch.py), and template.fc3.yml sets FUNCTION_COMPUTE_API=3.

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
TEMPLATE = ROOT / "template.yml"  # FC 2.0 (FC=2)
TEMPLATE_FC3 = ROOT / "template.fc3.yml"  # FC 3.0 (FC=3)
FC_APIS = ("2", "3")
FC3_EXTRA = "fc3"  # pyproject's extra with the FC 3.0 SDK
DEPLOY = ROOT / "deploy"
FUNCTIONS = ("drainer", "processor", "sweep")
CODE = "code"  # build/code: the one code package
DATABASES = ("mysql", "postgresql")
TARGET_BYTES = 40 * 1000 * 1000  # everything a function loads, unzipped (FC=2, MySQL: the default build)
# FC=3: the FC 3.0 SDK brings the Tea stack (aiohttp, yarl, multidict, APScheduler, aiofiles ...) and its models,
# about 7 MB with their bytecode, where FC=2's fc2 is 0.1 MB.
FC3_EXTRA_BYTES = 7 * 1000 * 1000
PYTHON_TAG = "cp310"  # FC python3.10
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")  # FC python3.10: Debian 10, glibc 2.28
PLATFORM = "manylinux_2_28 x86_64"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

# Secrets: never written into build/template.yml; `s` reads them from the environment when it deploys.
SECRET_VARIABLES = ("LEDGER_URL", "WEBHOOK_URL", "WEBHOOK_SECRET")

CLI_ONLY = ("typer",)  # the operations CLI (and the rich and click it brings) never runs on FC
SOURCE_ONLY = ("aliyun-fc2",)  # published as an sdist only; pure Python, so it is built here without its deps
FC2_ONLY = ("aliyun-fc2",)  # FC 2.0's SDK: not in an FC=3 build
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


def declared_requirements() -> list[tuple[Any, str | None]]:
    """pyproject.toml's requirements as (packaging Requirement, extra or None for [project] dependencies): read from
    pyproject.toml itself where tomllib is (Python 3.11+), else from the project's installed metadata."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata (make venv reinstalls when pyproject changes)
        from importlib.metadata import requires

        declared = []
        for text in requires("flow-receipts") or []:
            requirement = Requirement(text)
            marker = str(requirement.marker or "")
            extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", marker)
            if extra:
                requirement.marker = None
            declared.append((requirement, extra.group(1) if extra else None))
        return declared
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [(Requirement(text), None) for text in project.get("dependencies", [])]
    for extra, texts in (project.get("optional-dependencies") or {}).items():
        declared += [(Requirement(text), extra) for text in texts]
    return declared


def runtime_requirements(db: str = "mysql", fc: str = "2") -> list[str]:
    """The functions' runtime dependencies (no dev extras, not the CLI's) with the database driver of `db` only and
    the SDK of FC `fc` only (FC 2.0: aliyun-fc2; FC 3.0: the fc3 extra), from pyproject.toml ([project]
    dependencies, the postgres extra for the psycopg driver, the fc3 extra)."""
    if db not in DATABASES:
        raise BuildError(f"DB must be one of {', '.join(DATABASES)} (got {db!r})")
    if fc not in FC_APIS:
        raise BuildError(f"FC must be one of {', '.join(FC_APIS)} (got {fc!r})")
    declared = declared_requirements()
    base = [r for r, extra in declared if extra is None and r.marker is None and _name(r.name) not in CLI_ONLY]
    if fc == "3":
        base = [r for r in base if _name(r.name) not in FC2_ONLY]
        sdk = [r for r, extra in declared if extra == FC3_EXTRA]
        if not sdk:
            raise BuildError(f"pyproject.toml declares no [{FC3_EXTRA}] extra (the FC 3.0 SDK) for FC=3")
        base += sdk
    drivers = {_name(d) for d in DRIVERS.values()}
    chosen = [r for r in base if _name(r.name) not in drivers]
    pool = base + [r for r, extra in declared if extra == "postgres"]
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


def install_dependencies(target: Path, lock: Path) -> dict[str, str]:
    """pip installs the lock (local/lock.py: every distribution pinned with its sha256, for FC's python3.10:
    manylinux wheels, Debian 10 has glibc 2.28) into `target`: `--require-hashes --no-deps`, so exactly the locked
    files; the sdist-only ones (SOURCE_ONLY) are built here. Returns the distributions shipped at another version
    than the tests ran (name -> tested version; e.g. a release that needs Python 3.11). No bytecode: this machine's
    Python would compile it for the wrong version."""
    from local.lock import read_lock, target_platform

    pins = read_lock(lock)
    pip = [sys.executable, "-m", "pip", "install", "--no-compile", "--target", str(target)]
    pip += ["--disable-pip-version-check", "--require-hashes", "--no-deps", *target_platform()]
    pip += [f"--no-binary={pin.name}" for pin in pins.values() if pin.source]
    _run([*pip, "--requirement", str(lock)])
    tested = tested_versions()
    return {name: tested[name] for name, pin in pins.items() if name in tested and tested[name] != pin.version}


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
    """The functions' variables from a rendered template (FC 2.0 or 3.0), each ${env(NAME)} / ${env('NAME')}
    replaced by a stub value."""
    from local.template_rules import DEPLOY_TIME, DEPLOY_TIME_FC3

    stubs = {**STUBS, "LEDGER_URL": PROBE_URLS[db]}
    environment: dict[str, str] = {}
    for function in template_functions(document).values():
        for name, value in (function.get("environmentVariables") or {}).items():
            value = DEPLOY_TIME.sub(lambda m: stubs.get(m.group(1), "stub"), str(value))
            environment[name] = DEPLOY_TIME_FC3.sub(lambda m: stubs.get(m.group(1), "stub"), value)
    return environment


# What local/probe.py imports lazily of the FC SDK, per generation, and the context it hands the initializers: the
# probe is written for FC 2.0 (fc2, a context with a service); an FC=3 package has the FC 3.0 SDK instead and FC
# 3.0's python3.10 context (credentials, no service).
PROBE_SDKS = {
    "2": ("fc2",),
    "3": (
        "alibabacloud_fc20230330.client",
        "alibabacloud_fc20230330.models",
        "alibabacloud_tea_openapi.models",
        "alibabacloud_tea_util.models",
        "darabonba.exceptions",
        "Tea.exceptions",
    ),
}


def probe_script(fc: str = "2") -> str:
    """local/probe.py as `python -c` runs it, for the SDK of FC `fc`: FC=2 runs it as it is; FC=3 runs it as a
    module whose LAZY list names the FC 3.0 SDK instead of fc2 and whose context has no service."""
    source = PROBE.read_text()
    if fc == "2":
        return source
    return (
        "import sys\n"
        "probe = {'__name__': 'flow_receipts_probe', '__builtins__': __builtins__}\n"
        f"exec(compile({source!r}, 'probe.py', 'exec'), probe)\n"
        f"probe['LAZY'] = tuple(n for n in probe['LAZY'] if n not in {PROBE_SDKS['2']!r}) + {PROBE_SDKS[fc]!r}\n"
        "fc2_context = probe['context']\n"
        "def fc3_context(name):\n"
        "    context = fc2_context(name)\n"
        "    del context.service\n"
        "    return context\n"
        "probe['context'] = fc3_context\n"
        "probe['main'](sys.argv[1:])\n"
    )


def run_probe(python: str, code: Path, environment: Mapping[str, str], *args: str, fc: str = "2") -> dict[str, Any]:
    """local/probe.py inside the package under `python` (isolated: nothing but the package on its path)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(code), "TMPDIR": tempfile.gettempdir()}
    env.update(environment)
    done = subprocess.run(
        [python, "-I", "-S", "-B", "-c", probe_script(fc), *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise BuildError(f"the package does not import under {python}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_imported(python: str, code: Path, environment: Mapping[str, str], fc: str = "2") -> dict[str, Any]:
    """Imports and initialises the three functions under FC's Python inside the package, then compiles what they
    imported to cp310 bytecode (unchecked-hash: FC's /code is read-only, so Python can never cache bytecode there,
    and the zip's timestamps do not matter). Returns what the probe saw."""
    seen = run_probe(python, code, environment, "modules", *FUNCTIONS, fc=fc)
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


def template_path(fc: str = "2") -> Path:
    """The source template of FC `fc`: template.yml (FC 2.0) or template.fc3.yml (FC 3.0)."""
    if fc not in FC_APIS:
        raise BuildError(f"FC must be one of {', '.join(FC_APIS)} (got {fc!r})")
    return TEMPLATE if fc == "2" else TEMPLATE_FC3


def template_generation(document: Mapping[str, Any]) -> str:
    """ "3" for an edition 3.0.0 template (resources of component fc3), else "2"."""
    return "3" if str(document.get("edition", "")) == "3.0.0" else "2"


def template_functions(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """function name -> its properties in a rendered template: FC 2.0's props.function (name, codeUri, handler,
    initializer, environmentVariables, asyncConfiguration ...), FC 3.0's props (functionName, code, handler,
    instanceLifecycleConfig, environmentVariables, asyncInvokeConfig, role, logConfig, vpcConfig ...)."""
    if template_generation(document) == "3":
        return {str(e["props"]["functionName"]): e["props"] for e in document["resources"].values()}
    return {str(e["props"]["function"]["name"]): e["props"]["function"] for e in document["services"].values()}


def render_fc3_template(
    path: Path,
    environ: Mapping[str, str],
    *,
    keep: Iterable[str] = (),
    strict: bool = False,
    unresolved: str = "empty",
) -> dict[str, Any]:
    """An FC 3.0 template (edition 3.0.0, `resources:`) with `${vars.x}` and `${env('NAME', 'default')}` resolved
    and `vars` dropped, as local.fc.functions.render_template does for FC 2.0 (the same resolution); the references
    it leaves for `s` (the `keep` secrets, and unset variables with `unresolved="reference"`) are written
    ${env('NAME')}, the spelling edition 3.0.0 resolves. `template:` / `extend:` are not rendered (the file does
    not use them): TemplateError."""
    import yaml

    from local.fc.functions import TemplateError, _Resolution, _resolve  # the one resolution, shared

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or str(document.get("edition", "")) != "3.0.0":
        raise TemplateError(f"{path}: not an FC 3.0 template (edition 3.0.0 with resources:)")
    if not isinstance(document.get("resources"), dict):
        raise TemplateError(f"{path}: no `resources:` mapping (FC 3.0 templates use resources, not services)")
    if "template" in document or any(isinstance(e, dict) and "extend" in e for e in document["resources"].values()):
        raise TemplateError(f"{path}: template / extend are not rendered here: write each resource's props out")
    how = _Resolution(environ, strict=strict, keep=frozenset(keep), unresolved=unresolved)
    raw_vars = document.get("vars") or {}
    variables = _resolve(raw_vars, raw_vars, f"{path}: vars", how)
    rendered = {k: v for k, v in document.items() if k != "vars"}
    rendered["resources"] = _quoted_references(_resolve(document["resources"], variables, f"{path}: resources", how))
    if how.missing and strict:
        names = ", ".join(dict.fromkeys(how.missing))
        raise TemplateError(f"{path}: set these environment variables (they have no default): {names}")
    return rendered


def _quoted_references(value: Any) -> Any:
    """${env(NAME)} -> ${env('NAME')}: Serverless Devs 3.x evaluates the text between the parentheses."""
    from local.template_rules import DEPLOY_TIME

    if isinstance(value, dict):
        return {k: _quoted_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quoted_references(v) for v in value]
    if isinstance(value, str):
        return DEPLOY_TIME.sub(lambda m: "${env('" + m.group(1) + "')}", value)
    return value


def built_template(environ: Mapping[str, str], *, strict: bool = False, fc: str = "2") -> dict[str, Any]:
    """The template of FC `fc` (template.yml, or template.fc3.yml) as Serverless Devs should deploy it: rendered from
    `environ` (strict: every variable without a default must be set), each function's code the one package and its
    handler and initializer in <function>.py. Raises BuildError naming every problem the fc (fc3) component would
    refuse."""
    from local.fc.functions import TemplateError, render_template
    from local.template_rules import check_template

    path = template_path(fc)
    try:
        if fc == "2":
            document = render_template(path, environ, keep=SECRET_VARIABLES, strict=strict, unresolved="reference")
        else:
            document = render_fc3_template(path, environ, keep=SECRET_VARIABLES, strict=strict, unresolved="reference")
    except TemplateError as exc:
        raise BuildError(str(exc)) from None
    if fc == "2":
        for key, entry in document["services"].items():
            function = (entry.get("props") or {}).get("function") or {}
            _point_at_package(function, "codeUri", ("handler", "initializer"), f"services.{key}")
    else:
        for key, entry in document["resources"].items():
            props = entry.get("props") or {}
            initializer = ((props.get("instanceLifecycleConfig") or {}).get("initializer")) or {}
            _point_at_package(props, "code", ("handler",), f"resources.{key}", hooks={"initializer": initializer})
    problems = check_template(document)
    if problems:
        component = "fc" if fc == "2" else "fc3"
        raise BuildError(f"{path.name}: the {component} component would refuse it:\n  " + "\n  ".join(problems))
    return document


def _point_at_package(
    function: dict[str, Any],
    code_key: str,
    hooks_here: tuple[str, ...],
    where: str,
    hooks: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """./functions/<name> -> ./code, and index.<attribute> -> <name>.<attribute> for the handler and hooks."""
    source = Path(str(function.get(code_key, "")))
    if source.parent != Path("functions") or source.name not in FUNCTIONS:
        raise BuildError(f"{where}: {code_key} must be ./functions/<one of {', '.join(FUNCTIONS)}>")
    function[code_key] = f"./{CODE}"
    targets = [(function, key, key) for key in hooks_here if key in function]
    targets += [(hook, "handler", name) for name, hook in (hooks or {}).items() if "handler" in hook]
    for holder, key, label in targets:
        module, _, attribute = str(holder[key]).rpartition(".")
        if module != "index":
            raise BuildError(f"{where}: {label} must be index.<function> in {source}/index.py")
        holder[key] = f"{source.name}.{attribute}"


def write_template(out: Path, document: Mapping[str, Any]) -> Path:
    import yaml

    source = "template.fc3.yml" if template_generation(document) == "3" else "template.yml"
    fc = template_generation(document)
    reference = "${env(NAME)}" if fc == "2" else "${env('NAME')}"
    header = (
        f"# Rendered from {source} by `make build FC={fc}` / `make deploy FC={fc}` (local/build.py); do not edit, "
        "re-render.\n"
        f"# {reference} references are read by `s` from the environment at deploy time (secrets stay there).\n"
        f"# Deploy: make deploy FC={fc}   (runs: s deploy -t build/template.yml -y)\n"
    )
    path = out / "template.yml"
    path.write_text(header + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=120))
    return path


def function_names(document: Mapping[str, Any]) -> dict[str, str]:
    """resource key (drainer, processor, sweep) -> the function's name in a rendered template (FC 2.0: processor;
    FC 3.0: flow-receipts-processor)."""
    if template_generation(document) == "3":
        return {key: str(e["props"]["functionName"]) for key, e in document["resources"].items()}
    return {key: str(e["props"]["function"]["name"]) for key, e in document["services"].items()}


def template_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the policies need from a rendered template: generation, region, account, service (FC 2.0; "" on FC
    3.0), functions, queues, logs, and the names of the functions the drainer and the sweep invoke."""
    fc = template_generation(document)
    functions = template_functions(document)
    if fc == "2":
        first = next(iter(document["services"].values()))["props"]
        service = first["service"]
        role, log, service_name = service.get("role", ""), service.get("logConfig"), str(service["name"])
        failures = [
            ((f.get("asyncConfiguration") or {}).get("destination") or {}).get("onFailure") for f in functions.values()
        ]
    else:
        first = next(iter(document["resources"].values()))["props"]
        role, log, service_name = first.get("role", ""), first.get("logConfig"), ""
        failures = [
            (((f.get("asyncInvokeConfig") or {}).get("destinationConfig") or {}).get("onFailure") or {}).get(
                "destination"
            )
            for f in functions.values()
        ]
    role = str(role or "")
    account = role.split(":")[3] if role.count(":") >= 4 else ""
    sweep = function_names(document).get("sweep", "sweep")
    sweep_env = (functions.get(sweep) or {}).get("environmentVariables") or {}
    processors = {
        str(f["environmentVariables"]["PROCESSOR_FUNCTION"])
        for f in functions.values()
        if "PROCESSOR_FUNCTION" in (f.get("environmentVariables") or {})
    }
    return {
        "fc": fc,
        "region": first["region"],
        "account_id": account,
        "service": service_name,
        "functions": sorted(functions),
        "log": log if isinstance(log, Mapping) else {},
        "failure_destination": next((str(f) for f in failures if f), ""),
        "flow_api": sweep_env.get("FLOW_API", "charge"),
        "not_found": sweep_env.get("SWEEP_NOT_FOUND", "resubmit"),
        "self_invoke": str(sweep_env.get("SWEEP_SELF_INVOKE", "")).lower() == "true",
        "invoked": sorted(processors | {sweep}),  # the drainer's async dispatch, the sweep's SWEEP_SELF_INVOKE
    }


def render_policy(document: Mapping[str, Any]) -> dict[str, Any]:
    """deploy/ram-policy.json with the template's values: ${region}, ${account_id}, ${service}, ${dlq},
    ${log_project}, ${log_store}; the flow API statement keeps only FLOW_API's two actions (and only the status
    query when SWEEP_NOT_FOUND never re-submits). For an FC 3.0 template, fc:InvokeFunction names the FC 3.0
    functions the drainer (PROCESSOR_FUNCTION) and the sweep (itself) invoke: acs:fc:<region>:<account>:functions/<fn>
    (FC 3.0 has no services)."""
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
        if values["fc"] == "3" and actions == ["fc:InvokeFunction"]:
            statement["Resource"] = [
                f"acs:fc:{values['region']}:{values['account_id']}:functions/{name}" for name in values["invoked"]
            ]
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
    fc: str = "2",
    skip_deps: bool = False,
    bytecode: str = "auto",
    environ: Mapping[str, str] | None = None,
    locks: Path | None = None,
) -> dict[str, Any]:
    """Builds into `out` (replaced) for FC `fc` ("2": template.yml and aliyun-fc2; "3": template.fc3.yml and the
    fc3 extra) and the `db` driver; returns the manifest (also written to out/manifest.json). The dependencies come
    from the flavour's lock in `locks` (default requirements/), checked against pyproject.toml first. `bytecode`:
    "yes" (needs a Python 3.10), "no", or "auto" (when one is found; see find_python310)."""
    from local.lock import check_lock

    environ = os.environ if environ is None else environ
    requirements = runtime_requirements(db, fc)
    document = built_template(environ, fc=fc)  # first: a template the component would refuse stops the build at once
    lock = None if skip_deps else check_lock(db, fc, locks)  # and a lock that disagrees with pyproject.toml
    if out.exists():
        shutil.rmtree(out)
    code = out / CODE
    code.mkdir(parents=True)
    removed: dict[str, int] = {}
    unpinnable: dict[str, str] = {}
    if lock is not None:
        unpinnable = install_dependencies(code, lock)
        removed = trim(code, db)
    copy_code(code)
    python = find_python310() if bytecode != "no" else None
    if bytecode == "yes" and python is None:
        raise BuildError("--bytecode yes needs a Python 3.10 (set FC_PYTHON, or put python3.10 on the PATH)")
    probed: dict[str, Any] = {}
    if python is not None and not skip_deps:
        probed = compile_imported(python, code, probe_environment(document, db), fc)
    write_template(out, document)
    write_policies(out, document)
    leaked = dev_only_content(code)
    if leaked:
        raise BuildError(f"development-only content in the build: {', '.join(leaked)}")
    distributions = {name: version for name, (version, _) in sorted(installed_distributions(code).items())}
    size = _bytes(code)
    manifest = {
        "fc": fc,
        "template": template_path(fc).name,
        "db": db,
        "lock": str(lock.relative_to(ROOT) if lock.is_relative_to(ROOT) else lock) if lock else "",
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
        "target_bytes": TARGET_BYTES + (FC3_EXTRA_BYTES if fc == "3" else 0),
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
        f"built {out / CODE} for {', '.join(FUNCTIONS)} (FC={manifest.get('fc', '2')}, DB={manifest['db']}, "
        f"{manifest['python']} {PLATFORM}" + (", code only: --skip-deps)" if manifest["skip_deps"] else ")"),
        f"  unzipped {size / mb:.1f} MB in {manifest['files']} files ({verdict} the {target / mb:.0f} MB target), "
        f"zipped {manifest['zipped_bytes'] / mb:.1f} MB",
    ]
    if manifest.get("lock"):
        lines.append(f"  dependencies: {manifest['lock']} (pip --require-hashes)")
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
    source = manifest.get("template", "template.yml")
    lines.append(f"  {out / 'template.yml'} (from {source}), {out / 'ram-policy.json'}, {out / 'trust-policy.json'}")
    flag = "" if manifest.get("fc", "2") == "2" else f" FC={manifest['fc']}"
    lines.append(f"deploy with: make deploy{flag}   (s deploy -t build/template.yml -y)")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--db", choices=DATABASES, default="mysql", help="the ledger backend whose driver is shipped")
    parser.add_argument(
        "--fc", choices=FC_APIS, default="2", help="2: FC 2.0 (template.yml), 3: FC 3.0 (template.fc3.yml)"
    )
    parser.add_argument("--skip-deps", action="store_true", help="code only (e.g. to check the layout offline)")
    parser.add_argument(
        "--bytecode", choices=("auto", "yes", "no"), default="auto", help="compile what is imported, under 3.10"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        manifest = build(args.out, db=args.db, fc=args.fc, skip_deps=args.skip_deps, bytecode=args.bytecode)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(report(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
