"""The few errors the pipeline understands."""

from __future__ import annotations


class TransientError(Exception):
    """Retry later; never delete the message."""

    retry_helps = True  # False: transient for the pipeline, but the very same call cannot succeed (a stale handle)


class Throttled(TransientError):
    """The service asked us to slow down: back off longer than for other transient errors."""


class PoisonMessage(Exception):
    """Will never succeed: dead-letter the message with its raw body and this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(Exception):
    """A missing or bad setting: fail fast with one line naming it."""
