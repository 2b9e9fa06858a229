"""How a function's code is found and called, shared by the worker process and the in-process runner: the
handler string `module.func` is imported from the code directory, the return value becomes response bytes,
and an exception becomes FC's error body {"errorMessage", "errorType", "stackTrace"}."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_RUNTIME_DIR = Path(__file__).resolve().parent  # our own frames are left out of stack traces


class HandlerNotFound(Exception):
    pass


def prepare_path(code_uri: str | Path, python_path: Sequence[str | Path] = ()) -> None:
    """The code directory first on sys.path (FC's /code), then any extra directories."""
    entries = [str(Path(code_uri).resolve())] + [str(Path(p).resolve()) for p in python_path]
    for entry in reversed(entries):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def load_callable(code_uri: str | Path, target: str) -> Callable[..., Any]:
    """Import `module.func` (the module may be dotted: app.handlers.process) from `code_uri`, which must
    already be on sys.path (see prepare_path). A module that exists under another directory is refused, so
    a stale or shadowing import cannot stand in for the function's code."""
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise HandlerNotFound(f"Invalid handler '{target}': expected module.function")
    code_dir = Path(code_uri).resolve()
    relative = Path(*module_name.split("."))
    if not ((code_dir / relative).with_suffix(".py").is_file() or (code_dir / relative / "__init__.py").is_file()):
        raise HandlerNotFound(f"Module '{module_name}' not found in code directory {code_dir}")
    module = importlib.import_module(module_name)
    origin = Path(getattr(module, "__file__", "") or "").resolve()
    if code_dir not in origin.parents:
        raise HandlerNotFound(f"Module '{module_name}' was imported from {origin}, not from {code_dir}")
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HandlerNotFound(f"Handler '{attribute}' missing on module '{module_name}'")
    return function


def encode_result(value: Any) -> bytes:
    """bytes as they are, str as UTF-8, None as an empty body, anything else as JSON."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The python runtime's error body: stackTrace as [file, line, function, code] rows, innermost last."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).parent != _RUNTIME_DIR]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": [[f'File "{f.filename}"', f"line {f.lineno}", f"in {f.name}", f.line or ""] for f in frames],
    }
