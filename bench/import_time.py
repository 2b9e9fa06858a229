"""Cold-start import time of each handler module, from the built code package, under FC's Python (3.10).

    .venv/bin/python -m bench.import_time [--build DIR] [--db mysql|postgresql] [--runs 7]

Without --build it runs `make build` (with wheels, for --db) into a temporary directory first, and reports the
package's size. For each function, in fresh processes (`python3.10 -I -S -B`, the package directory first on the
path and nothing else, the function's variables from the template with stub values):

  handler   `import <function>` (drainer.py, processor.py, sweep.py: the handler module and all it imports)
  sdks      the bare `import` of the third-party packages that handler module brings in (found by importing it
            once): aliyun-mns-sdk, aliyun-python-sdk-core, SQLAlchemy, pydantic, Powertools, ... - the baseline
  source    the handler's import again from a copy of the package without its cp310 bytecode (what FC would pay
            at every cold start without it: /code is read-only, so Python cannot cache bytecode there)

Each is the median of --runs processes, alternated so that machine noise hits them alike. Reported: milliseconds,
and handler / sdks (what our own modules add on top of the SDKs they stand on) and source / handler (what the
bytecode saves). No target: the figures are stated. Prints them, then one JSON line; exits non-zero only on errors
(no Python 3.10, a package that does not import).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.entry import run_benchmark
from bench.results import Check, write_result
from local.build import FUNCTIONS, build, built_template, find_python310, probe_environment, run_probe

NAME = "import_time"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.import_time", description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, help="a build directory (make build); default: build one now")
    parser.add_argument("--db", choices=("mysql", "postgresql"), default="mysql")
    parser.add_argument("--runs", type=int, default=7)
    return parser.parse_args(argv)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def measure(python: str, code: Path, source_only: Path, environment: dict[str, str], runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for function in FUNCTIONS:
        sdks = run_probe(python, code, environment, "modules", function)["sdks"][function]
        handler, bare, source = [], [], []
        for _ in range(runs):
            handler.append(run_probe(python, code, environment, "time", function)["seconds"])
            bare.append(run_probe(python, code, environment, "time", *sdks)["seconds"])
            source.append(run_probe(python, source_only, environment, "time", function)["seconds"])
        results[function] = {
            "import_ms": median_ms(handler),
            "sdks_ms": median_ms(bare),
            "ratio": round(statistics.median(handler) / statistics.median(bare), 2),
            "source_only_import_ms": median_ms(source),
            "bytecode_speedup": round(statistics.median(source) / statistics.median(handler), 2),
            "sdks": sdks,
        }
    return results


def run(args: argparse.Namespace) -> int:
    python = find_python310()
    if python is None:
        raise RuntimeError("no Python 3.10 found (FC_PYTHON, python3.10 on the PATH, ~/.pyenv/versions/3.10*)")
    with tempfile.TemporaryDirectory(prefix="import-time-") as scratch:
        out = args.build
        if out is None:
            out = Path(scratch) / "build"
            print(f"building the package for DB={args.db} (pip, for python3.10) ...", file=sys.stderr)
            build(out, db=args.db)
        manifest = json.loads((out / "manifest.json").read_text())
        code = out / "code"
        source_only = Path(scratch) / "source-only"
        shutil.copytree(code, source_only, ignore=shutil.ignore_patterns("__pycache__"))
        environment = probe_environment(built_template({}), manifest["db"])
        results = measure(python, code, source_only, environment, args.runs)
    mb = 1e6
    print(
        f"package: {manifest['unzipped_bytes'] / mb:.1f} MB unzipped ({manifest['zipped_bytes'] / mb:.1f} MB zipped, "
        f"{manifest['files']} files; DB={manifest['db']}); bytecode: {manifest['bytecode']}"
    )
    for function, figures in results.items():
        print(
            f"  {function:9s} import {figures['import_ms']:6.1f} ms vs its SDKs {figures['sdks_ms']:6.1f} ms "
            f"-> {figures['ratio']:.2f}x;  without bytecode {figures['source_only_import_ms']:6.1f} ms "
            f"({figures['bytecode_speedup']:.2f}x slower)   [{', '.join(figures['sdks'])}]"
        )
    print(f"  medians of {args.runs} fresh processes each, Python {python}")
    detail = {
        "benchmark": NAME,
        "python": python,
        "db": manifest["db"],
        "unzipped_bytes": manifest["unzipped_bytes"],
        "zipped_bytes": manifest["zipped_bytes"],
        "target_bytes": manifest["target_bytes"],
        "resident_kb_after_init": manifest.get("resident_kb_after_init"),
        "runs": args.runs,
        "functions": results,
    }
    print(json.dumps(detail), flush=True)
    write_result(NAME, checks(manifest, results), detail)
    return 0


def checks(manifest: dict[str, Any], results: dict[str, Any]) -> list[Check]:
    """The package's unzipped size against the build's target (from the manifest), then each function's cold-start
    import against the bare imports of its SDKs (reported)."""
    mb = 1e6
    rows = [
        Check(
            "build_size",
            f"code package, DB={manifest['db']}, unzipped ({manifest['zipped_bytes'] / mb:.1f} MB zipped)",
            manifest["unzipped_bytes"] / mb,
            "MB",
            target=manifest["target_bytes"] / mb,
            op="<=",
            on="figure",
        )
    ]
    for function, figures in results.items():
        rows.append(
            Check(
                f"{function}_import",
                f"{function} cold-start import",
                figures["import_ms"],
                "ms",
                figures["sdks_ms"],
                "its SDKs, bare",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(NAME, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
