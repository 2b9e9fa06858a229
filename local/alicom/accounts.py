"""Customer accounts the emulator knows, and Alicom's queue naming."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ACCOUNTS: dict[str, tuple[str, str]] = {"local-ak": ("local-sk", "1234567890123456")}
QUEUE_PREFIX = "Alicom-Queue-"
FLOW_REPORT = "FlowReport"
# The receipt types Alicom delivers through the same transport (reference §3.5, §4.2).
MESSAGE_TYPES = frozenset(
    {
        "SmsReport",
        "SmsUp",
        "VoiceReport",
        "VoiceCallReport",
        "VoiceRecordReport",
        "FlowReport",
        "SecretReport",
        "DypnsSmsVerifyReport",
    }
)


@dataclass(frozen=True)
class Customer:
    access_key_id: str
    secret: str
    uid: str

    def __repr__(self) -> str:  # keeps the secret out of logs and assertion messages
        return f"Customer(access_key_id={self.access_key_id!r}, uid={self.uid!r})"


def queue_name(uid: str, message_type: str = FLOW_REPORT) -> str:
    return f"{QUEUE_PREFIX}{uid}-{message_type}"


class AccountBook:
    def __init__(self, accounts: Mapping[str, tuple[str, str]] | None = None) -> None:
        chosen = DEFAULT_ACCOUNTS if accounts is None else accounts
        if not chosen:
            raise ValueError("at least one account is needed")
        self._by_key = {key: Customer(key, secret, str(uid)) for key, (secret, uid) in chosen.items()}
        self.default_uid = next(iter(self._by_key.values())).uid

    def lookup(self, access_key_id: str) -> Customer | None:
        return self._by_key.get(access_key_id)

    def uids(self) -> list[str]:
        return list(dict.fromkeys(customer.uid for customer in self._by_key.values()))

    def describe(self) -> list[dict[str, str]]:
        return [
            {"access_key_id": c.access_key_id, "uid": c.uid, "queue": queue_name(c.uid)} for c in self._by_key.values()
        ]
