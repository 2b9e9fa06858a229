"""How the emulated Alicom side behaves: charge completion, receipt delivery, token lifetime."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

# Failure codes a completed charge may carry. Only UNKNOW is documented (reference §4.1); the others are
# placeholders chosen for the emulator so that tests see more than one code.
DEFAULT_FAILURE_CODES: tuple[tuple[str, str], ...] = (
    ("UNKNOW", "未知错误"),
    ("MOBILE_NOT_SUPPORT", "号码不支持该流量包"),
    ("OPERATOR_FAILED", "运营商充值失败"),
)


class BehaviourError(ValueError):
    pass


def _rate(value: object, name: str) -> float:
    number = _number(value, name)
    if number > 1:
        raise BehaviourError(f"{name} must be between 0 and 1, got {value}")
    return number


def _number(value: object, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BehaviourError(f"{name} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise BehaviourError(f"{name} must be {'positive' if positive else 'at least 0'}, got {value}")
    return float(value)


def failure_codes_from(entries: Iterable[object]) -> tuple[tuple[str, str], ...]:
    """Accepts "CODE" or ["CODE", "message"] entries (the admin API sends JSON lists)."""
    known = dict(DEFAULT_FAILURE_CODES)
    if isinstance(entries, str | bytes) or not isinstance(entries, Iterable):
        raise BehaviourError("failure_codes must be a list of codes or [code, message] pairs")
    codes: list[tuple[str, str]] = []
    for entry in entries:
        if isinstance(entry, str) and entry:
            codes.append((entry, known.get(entry, f"充值失败({entry})")))
        elif isinstance(entry, list | tuple) and len(entry) == 2 and all(isinstance(p, str) and p for p in entry):
            codes.append((entry[0], entry[1]))
        else:
            raise BehaviourError(f"failure_codes entries must be a code or a [code, message] pair, got {entry!r}")
    if not codes:
        raise BehaviourError("failure_codes must not be empty")
    return tuple(codes)


@dataclass(frozen=True)
class Behaviour:
    charge_delay_seconds: float = 0.2
    success_rate: float = 0.9
    failure_codes: tuple[tuple[str, str], ...] = field(default=DEFAULT_FAILURE_CODES)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    token_ttl_seconds: float = 600.0
    seed: int | None = None

    def updated(self, changes: Mapping[str, object]) -> Behaviour:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise BehaviourError(f"unknown behaviour setting(s): {', '.join(sorted(unknown))}")
        checked: dict[str, object] = {}
        for name, value in changes.items():
            if name in ("success_rate", "drop_rate", "duplicate_rate"):
                checked[name] = _rate(value, name)
            elif name == "charge_delay_seconds":
                checked[name] = _number(value, name)
            elif name == "token_ttl_seconds":
                checked[name] = _number(value, name, positive=True)
            elif name == "failure_codes":
                checked[name] = failure_codes_from(value)  # type: ignore[arg-type]
            elif name == "seed" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BehaviourError("seed must be an integer or null")
            else:
                checked[name] = value
        result = replace(self, **checked)  # type: ignore[arg-type]
        if result.drop_rate + result.duplicate_rate > 1:
            raise BehaviourError("drop_rate + duplicate_rate must not exceed 1")
        return result

    def to_dict(self) -> dict[str, object]:
        return {
            f.name: [list(pair) for pair in self.failure_codes] if f.name == "failure_codes" else getattr(self, f.name)
            for f in fields(self)
        }
