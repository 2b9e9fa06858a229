"""`make build`: each function's directory is self-contained (index.py + shared/) and the built template
points at it, so FC's `index.handler` imports without the repository around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from local.build import main as build
from local.fc.functions import load_template


def test_build_lays_out_self_contained_functions(tmp_path: Path) -> None:
    out = tmp_path / "build"
    assert build(["--out", str(out), "--skip-deps"]) == 0
    specs = {spec.name: spec for spec in load_template(out / "template.yml")}
    assert set(specs) == {"drainer", "processor", "sweep"}
    for name, spec in specs.items():
        code = Path(spec.code_uri)
        assert code == out / name
        assert (code / "index.py").exists() and (code / "shared" / "adapters" / "ledger" / "__init__.py").exists()
        imported = subprocess.run(
            [sys.executable, "-c", "import index; print(index.handler.__module__)"],
            cwd=code,
            env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip() == "index"
