"""`python -m bench` runs a benchmark in its own process, which writes its results file, and the summary table is
built from those files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.results import KEYS, Check, build_result, format_table, load_result, rows

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_of_one_benchmark_writes_its_results_and_the_table(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "log_line", "--results", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads((tmp_path / "log_line.json").read_text())
    assert set(result) == set(KEYS)
    assert result["name"] == "log_line"
    assert set(result["machine"]) == {"cpus", "python", "commit"}
    assert result["machine"]["cpus"] >= 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    assert result["machine"]["commit"].removesuffix("-dirty") == head.strip()
    assert result["met"] in (True, False)
    rows_of_run = {key for key in result["target"]}
    assert rows_of_run == {"summary_line", "receipt_line", "fc2_line", "sdk_line"}
    for key in rows_of_run:
        assert result["figures"][key]["value"] > 0
        assert result["baseline"][key]["value"] > 0
    assert result["target"]["summary_line"]["op"] == "<=" and result["target"]["summary_line"]["on"] == "ratio"
    assert result["target"]["fc2_line"] == "reported"
    assert result["figures"]["detail"]["benchmark"] == "log_line"

    table = done.stdout.split("summary (", 1)[1].splitlines()[1:]
    assert table[0].split() == ["benchmark", "figure", "baseline", "ratio", "target", "met"]
    assert set(table[1]) <= {"-", " "}
    body = table[2:]
    assert len(body) == 4 and all(line.startswith("log_line: ") for line in body)
    assert body[2].endswith("reported")
    assert body[0].split()[-1] in ("met", "MISSED")


def test_table_of_a_results_file(tmp_path):
    checks = [
        Check("rate", "drain rate", 1177.0, "receipts/s", 22.0, "seed pattern", target=30.0),
        Check(
            "requests", "MNS requests per receipt", 0.126, "", 0.125, "floor 2/16", target=0.15, op="<=", on="figure"
        ),
        Check("latency", "p50 latency", 40.0, "ms", 8.0, "bare SDK"),
        Check("pg", "PostgreSQL", None, skipped="no server at 127.0.0.1:5432"),
    ]
    result = build_result("example", checks, detail={"anything": 1})
    assert result["met"] is True
    path = tmp_path / "example.json"
    path.write_text(json.dumps(result))
    table = rows(load_result(path))
    assert table[0] == (
        "example: drain rate",
        "1,177 receipts/s",
        "22 receipts/s (seed pattern)",
        "53.5×",
        "≥ 30×",
        "met",
    )
    assert table[1][3:] == ("1.01×", "≤ 0.15", "met")
    assert table[2][4:] == ("-", "reported")
    assert table[3][5].startswith("skipped: no server")
    lines = format_table(table)
    assert lines[0].split() == ["benchmark", "figure", "baseline", "ratio", "target", "met"]
    assert set(lines[1]) == {"-", " "} and lines[2].index("1,177") == lines[0].index("figure")  # aligned columns

    assert build_result("x", checks[:1], evaluated=False)["met"] is None  # a run with errors is not judged
    assert build_result("x", checks[2:3])["met"] == "reported"
    missed = Check("rate", "drain rate", 500.0, "receipts/s", 22.0, "seed pattern", target=30.0)
    assert build_result("x", [missed])["met"] is False
