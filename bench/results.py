"""The results file every benchmark writes, and the summary table `python -m bench` builds from them.

A benchmark states what it measured as a few checks (one table row each): a figure, the baseline it measured in
the same run, and a target, either on the ratio figure / baseline or on the figure itself, or none ("reported").
`write_result` prints the rows and writes `<results dir>/<name>.json`:

    {"name": ..., "figures": {row: {"label", "value", "unit"}, ..., "detail": <the benchmark's JSON line>},
     "baseline": {row: {"label", "value", "unit"} | null},
     "target": {row: {"on": "ratio" | "figure", "op": ">=" | "<=", "value", "met"} | "reported" | {"skipped"}},
     "met": true | false | null (not evaluated: the run had errors) | "reported" (no numeric target),
     "machine": {"cpus", "python", "commit"}}

The results directory is BENCH_RESULTS_DIR (set by `python -m bench --results DIR`), else bench/results.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = PROJECT_ROOT / "bench" / "results"
DIR_VARIABLE = "BENCH_RESULTS_DIR"
COMMIT_VARIABLE = "BENCH_COMMIT"
RESULTS_PATHSPEC = "bench/results"
KEYS = ("name", "figures", "baseline", "target", "met", "machine")
DETAIL = "detail"  # figures[DETAIL]: everything the benchmark measured (its JSON line), beside the rows
REPORTED = "reported"
COLUMNS = ("benchmark", "figure", "baseline", "ratio", "target", "met")


@dataclass(frozen=True)
class Check:
    """One row: `value` (`unit`) against `baseline`; the target `op` `target` on the ratio or on the figure."""

    key: str
    label: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    baseline_unit: str | None = None  # None: the figure's unit
    target: float | None = None  # None: reported, no target
    op: str = ">="
    on: str = "ratio"  # "ratio" (value / baseline) or "figure" (value)
    met: bool | None = None  # None: computed from the target (a benchmark may judge more, e.g. a leak)
    skipped: str = ""  # why this row could not be measured (a server that is not there): not judged

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def judged(self, evaluated: bool = True) -> bool | None:
        if self.skipped or self.target is None or not evaluated:
            return None
        if self.met is not None:
            return self.met
        measured = self.ratio if self.on == "ratio" else self.value
        if measured is None:
            return None
        return measured >= self.target if self.op == ">=" else measured <= self.target


def results_dir() -> Path:
    return Path(os.environ.get(DIR_VARIABLE) or DEFAULT_DIR)


def commit() -> str:
    """`git rev-parse HEAD`, with "-dirty" when the work tree has changes (tracked or new files, the results
    themselves aside); "unknown" outside a checkout. BENCH_COMMIT (set by `python -m bench` once per run) wins."""
    if os.environ.get(COMMIT_VARIABLE):
        return os.environ[COMMIT_VARIABLE]
    try:
        head = _git("rev-parse", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--", ".", f":(exclude){RESULTS_PATHSPEC}").strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "commit": commit()}


def build_result(name: str, checks: Iterable[Check], detail: Any = None, evaluated: bool = True) -> dict[str, Any]:
    """The results document. `evaluated` False (the run had errors): no row is judged, met is null."""
    checks = list(checks)
    figures: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    target: dict[str, Any] = {}
    for check in checks:
        figures[check.key] = {"label": check.label, "value": _number(check.value), "unit": check.unit}
        baseline[check.key] = (
            None
            if check.baseline is None
            else {
                "label": check.baseline_label,
                "value": _number(check.baseline),
                "unit": check.unit if check.baseline_unit is None else check.baseline_unit,
            }
        )
        if check.skipped:
            target[check.key] = {"skipped": check.skipped}
        elif check.target is None:
            target[check.key] = REPORTED
        else:
            target[check.key] = {
                "on": check.on,
                "op": check.op,
                "value": check.target,
                "met": check.judged(evaluated),
            }
    figures[DETAIL] = detail
    return {
        "name": name,
        "figures": figures,
        "baseline": baseline,
        "target": target,
        "met": overall(checks, evaluated),
        "machine": machine(),
    }


def overall(checks: list[Check], evaluated: bool = True) -> bool | str | None:
    judged = [c for c in checks if c.target is not None and not c.skipped]
    if not judged:
        return REPORTED
    verdicts = [c.judged(evaluated) for c in judged]
    if any(v is None for v in verdicts):
        return None
    return all(verdicts)


def write_result(
    name: str, checks: Iterable[Check], detail: Any = None, evaluated: bool = True, directory: Path | None = None
) -> Path:
    """Prints the rows and writes `<directory>/<name>.json` (directory: results_dir())."""
    result = build_result(name, checks, detail, evaluated)
    folder = results_dir() if directory is None else directory
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(path)
    print(f"{name}: results in {_shown(path)} (met: {verdict(result['met'])})")
    for line in format_table(rows(result), header=False):
        print(f"  {line}")
    return path


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return round(value, 1) if abs(value) >= 1000 else float(f"{value:.4g}")  # 4 significant digits at least


# ---- reading them back: the summary table --------------------------------------------------------------------------


def load_result(path: Path) -> dict[str, Any]:
    """A results file, checked for exactly the keys every benchmark writes."""
    result = json.loads(path.read_text())
    if not isinstance(result, dict) or set(result) != set(KEYS):
        raise ValueError(f"{path}: expected exactly the keys {', '.join(KEYS)}")
    if set(result["machine"]) != {"cpus", "python", "commit"}:
        raise ValueError(f"{path}: machine must hold cpus, python and commit")
    return result


def verdict(met: Any) -> str:
    if met is True:
        return "met"
    if met is False:
        return "MISSED"
    if met == REPORTED:
        return REPORTED
    return "not evaluated"


def rows(result: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One (benchmark, figure, baseline, ratio, target, met) row per check of a results document."""
    table = []
    for key, target in result["target"].items():
        figure = result["figures"][key]
        base = result["baseline"].get(key)
        ratio = None
        if base and figure["value"] is not None and base["value"]:
            ratio = figure["value"] / base["value"]
        if isinstance(target, dict) and "skipped" in target:
            target_text, met_text = "-", f"skipped: {target['skipped']}"[:60]
        elif target == REPORTED:
            target_text, met_text = "-", REPORTED
        else:
            sign = "≥" if target["op"] == ">=" else "≤"
            shown = f"{target['value']:g}×" if target["on"] == "ratio" else _amount(target["value"], figure["unit"])
            target_text, met_text = f"{sign} {shown}", verdict(target["met"])
        table.append(
            (
                f"{result['name']}: {figure['label']}",
                _amount(figure["value"], figure["unit"]),
                f"{_amount(base['value'], base['unit'])} ({base['label']})" if base else "-",
                "-" if ratio is None else f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.3g}×",
                target_text,
                met_text,
            )
        )
    return table


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_table(table: list[tuple[str, ...]], header: bool = True) -> list[str]:
    lines = [COLUMNS, *table] if header else list(table)
    if not lines:
        return []
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    if header:
        out.insert(1, "  ".join("-" * width for width in widths))
    return out
