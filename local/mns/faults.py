"""Fault injection: per-operation rates of errors and dropped connections, plus added latency."""

from __future__ import annotations

import copy
import random
import threading

from local.mns.credentials import ALL_OPERATIONS

RATE_KINDS = ("internal_error", "throttle", "drop_connection", "token_expired")
OPERATION_KEYS = frozenset((*RATE_KINDS, "latency_ms"))


class FaultConfigError(ValueError):
    pass


def _number(value: object, where: str, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{where} must be a number, got {value!r}")
    if value < 0 or (high is not None and value > high):
        raise FaultConfigError(f"{where} must be between 0 and {high if high is not None else 'any'}, got {value}")
    return float(value)


def validate(config: dict) -> dict:
    if not isinstance(config, dict):
        raise FaultConfigError("the fault configuration must be a JSON object")
    unknown = set(config) - {"latency_ms", "seed", "operations"}
    if unknown:
        raise FaultConfigError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    _number(config.get("latency_ms", 0), "latency_ms", None)
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FaultConfigError("seed must be an integer or null")
    operations = config.get("operations", {})
    if not isinstance(operations, dict):
        raise FaultConfigError("operations must be an object keyed by operation name or '*'")
    for name, entry in operations.items():
        if name != "*" and name not in ALL_OPERATIONS:
            raise FaultConfigError(f"unknown operation {name!r}; use '*' or one of {', '.join(sorted(ALL_OPERATIONS))}")
        if not isinstance(entry, dict):
            raise FaultConfigError(f"operations.{name} must be an object")
        for key, value in entry.items():
            if key not in OPERATION_KEYS:
                raise FaultConfigError(f"unknown fault {key!r} in operations.{name}")
            _number(value, f"operations.{name}.{key}", None if key == "latency_ms" else 1.0)
    return copy.deepcopy(config)


class FaultPlan:
    def __init__(self, config: dict | None = None) -> None:
        self._lock = threading.Lock()
        self._config: dict = {}
        self._random = random.Random()
        self.replace(config or {})

    def replace(self, config: dict) -> None:
        checked = validate(config)
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
