"""The few errors the pipeline understands."""

from __future__ import annotations


class TransientError(Exception):
    """Retry later; never delete the message."""


class PoisonMessage(Exception):
    """Will never succeed: dead-letter the message with its raw body and this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(Exception):
    """A missing or bad setting: fail fast with one line naming it."""
