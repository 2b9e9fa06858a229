"""Fault injection shared by the emulators: per-operation rates of failure kinds, plus added latency.

Each emulator names its operations and the failure kinds it can inject; the configuration shape is the
same everywhere: {"latency_ms": 0, "seed": null, "operations": {"*": {...}, "<Operation>": {...}}}.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Collection


class FaultConfigError(ValueError):
    pass


def _number(value: object, where: str, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{where} must be a number, got {value!r}")
    if value < 0 or (high is not None and value > high):
        raise FaultConfigError(f"{where} must be between 0 and {high if high is not None else 'any'}, got {value}")
    return float(value)


def validate(config: dict, operations: Collection[str], kinds: Collection[str]) -> dict:
    if not isinstance(config, dict):
        raise FaultConfigError("the fault configuration must be a JSON object")
    unknown = set(config) - {"latency_ms", "seed", "operations"}
    if unknown:
        raise FaultConfigError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    _number(config.get("latency_ms", 0), "latency_ms", None)
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FaultConfigError("seed must be an integer or null")
    entries = config.get("operations", {})
    if not isinstance(entries, dict):
        raise FaultConfigError("operations must be an object keyed by operation name or '*'")
    for name, entry in entries.items():
        if name != "*" and name not in operations:
            raise FaultConfigError(f"unknown operation {name!r}; use '*' or one of {', '.join(sorted(operations))}")
        if not isinstance(entry, dict):
            raise FaultConfigError(f"operations.{name} must be an object")
        for key, value in entry.items():
            if key != "latency_ms" and key not in kinds:
                raise FaultConfigError(
                    f"unknown fault {key!r} in operations.{name}; use latency_ms or one of {', '.join(kinds)}"
                )
            _number(value, f"operations.{name}.{key}", None if key == "latency_ms" else 1.0)
    return copy.deepcopy(config)


class FaultPlan:
    def __init__(self, operations: Collection[str], kinds: Collection[str], config: dict | None = None) -> None:
        self.operations = frozenset(operations)
        self.kinds = tuple(kinds)
        self._lock = threading.Lock()
        self._config: dict = {}
        self._random = random.Random()
        self.replace(config or {})

    def replace(self, config: dict) -> None:
        checked = validate(config, self.operations, self.kinds)
        with self._lock:
            self._config = checked
            self._random = random.Random(checked.get("seed"))

    def to_dict(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._config)

    def _setting(self, operation: str, key: str) -> float:
        operations = self._config.get("operations", {})
        for name in (operation, "*"):
            if key in operations.get(name, {}):
                return float(operations[name][key])
        return 0.0

    def latency_seconds(self, operation: str) -> float:
        with self._lock:
            total = float(self._config.get("latency_ms", 0)) + self._setting(operation, "latency_ms")
        return total / 1000

    def strikes(self, operation: str, kind: str) -> bool:
        with self._lock:
            rate = self._setting(operation, kind)
            return rate > 0 and self._random.random() < rate
