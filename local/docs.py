"""Regenerates the README's configuration table from the settings model: `python -m local.docs [--check]`."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.settings import configuration_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def rendered(readme: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{configuration_markdown().rstrip()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    current = README.read_text()
    wanted = rendered(current)
    if check:
        if current != wanted:
            print("README.md configuration table is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
