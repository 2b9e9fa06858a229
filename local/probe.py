"""Runs INSIDE a built code package, under FC's Python, with nothing of the repository on the path:

    cd build/code && python3.10 -I -S -B -c "$(cat ../../local/probe.py)" <command> [args]

(`-I -S`: no site-packages, no user paths, no PYTHON* variables; the probe puts the working directory, the
package, first on sys.path, as FC does with /code; `-B`: no bytecode written.) It imports only the standard
library and the package, so it answers for the package alone. Commands, each printing one JSON object:

    modules FUNCTION...    import each handler module, call its initializer with an FC-shaped context, import
                           every module of shared/ and what the handlers import lazily (the SDK clients, the
                           sweep, the async dispatcher); prints the .py files imported, the third-party packages
                           the first import of each handler module brought in (one function per process gives
                           each its own), the handlers found, the ledger's dialect and the resident memory
    time MODULE...         seconds to import the modules (one fresh process per measurement)

The settings come from the environment (the template's, with stub values). Used by local/build.py (bytecode for
what is imported, an import check under 3.10), the build tests and bench/import_time.py.
"""

import importlib
import json
import os
import pkgutil
import sys
import time
import types

HERE = os.path.abspath(os.getcwd())
sys.path.insert(0, HERE)

LAZY = (  # imported inside functions, not at module level: the SDK clients, the sweep, the async dispatcher
    "aliyunsdkcore.client",
    "aliyunsdkcore.request",
    "mns.account",
    "mns.queue",
    "fc2",
    "shared.services.sweep",
    "shared.services.redrive",
    "shared.adapters.dispatch",
)


def context(name):
    credentials = types.SimpleNamespace(access_key_id="probe-ak", access_key_secret="probe-sk", security_token="")
    function = types.SimpleNamespace(name=name, handler=f"{name}.handler", memory=512, timeout=60)
    service = types.SimpleNamespace(name="flow-receipts", log_project="", log_store="", qualifier="LATEST")
    return types.SimpleNamespace(
        request_id="probe",
        credentials=credentials,
        function=function,
        service=service,
        region="cn-hangzhou",
        account_id="1234567890123456",
        tracing=None,
    )


def top_level(names):
    here = HERE
    found = set()
    for name in names:
        module = sys.modules.get(name)
        path = os.path.abspath(getattr(module, "__file__", None) or "")
        root = name.split(".")[0]
        if path.startswith(here + os.sep) and root != "shared":
            found.add(root)
    return sorted(found)


def modules(functions):
    here = HERE
    before = set(sys.modules)
    sdks, handlers = {}, {}
    for name in functions:
        start = set(sys.modules)
        module = importlib.import_module(name)
        sdks[name] = [root for root in top_level(set(sys.modules) - start) if root not in functions]
        handlers[name] = sorted(a for a in ("handler", "initialize") if callable(getattr(module, a, None)))
        module.initialize(context(name))
    shared = importlib.import_module("shared")
    for info in pkgutil.walk_packages(shared.__path__, "shared."):
        importlib.import_module(info.name)
    for name in LAZY:
        importlib.import_module(name)
    from shared.runtime import runtime

    runtime.ledger.engine.dialect.dbapi  # noqa: B018 - the driver of LEDGER_URL, imported by the engine
    files = set()
    for name in set(sys.modules) - before:
        path = os.path.abspath(getattr(sys.modules[name], "__file__", None) or "")
        if path.endswith(".py") and path.startswith(here + os.sep):
            files.add(os.path.relpath(path, here))
    with open("/proc/self/status") as status:
        rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    return {
        "python": sys.version.split()[0],
        "handlers": handlers,
        "sdks": sdks,
        "files": sorted(files),
        "rss_kb": rss,
        "dialect": runtime.ledger.dialect,
    }


def timed(names):
    start = time.perf_counter()
    for name in names:
        importlib.import_module(name)
    return {"python": sys.version.split()[0], "seconds": time.perf_counter() - start}


def main(argv):
    command, args = argv[0], argv[1:]
    result = modules(args) if command == "modules" else timed(args) if command == "time" else None
    if result is None:
        raise SystemExit(f"unknown command {command!r}: modules FUNCTION... | time MODULE...")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
