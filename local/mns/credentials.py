"""Who may call what: the queue owner, the Alicom publisher, and STS tokens scoped to one queue."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from local.mns import errors

ALL_OPERATIONS = frozenset(
    {
        "CreateQueue",
        "DeleteQueue",
        "GetQueueAttributes",
        "SetQueueAttributes",
        "SendMessage",
        "BatchSendMessage",
        "ReceiveMessage",
        "BatchReceiveMessage",
        "PeekMessage",
        "BatchPeekMessage",
        "DeleteMessage",
        "BatchDeleteMessage",
        "ChangeMessageVisibility",
    }
)
PUBLISHER_OPERATIONS = frozenset({"SendMessage", "BatchSendMessage"})
STS_OPERATIONS = frozenset(
    {"ReceiveMessage", "BatchReceiveMessage", "DeleteMessage", "BatchDeleteMessage", "ChangeMessageVisibility"}
)


@dataclass(frozen=True)
class StsCredential:
    access_key_id: str
    access_key_secret: str
    security_token: str
    queue: str
    expires_at: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "security_token": self.security_token,
            "queue": self.queue,
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass(frozen=True)
class Principal:
    kind: str  # owner | publisher | sts
    access_key_id: str
    secret: str
    security_token: str = ""
    queue: str = ""
    expires_at: float = 0.0


class CredentialStore:
    def __init__(self, owner: tuple[str, str], publisher: tuple[str, str]) -> None:
        self._lock = threading.Lock()
        self._principals: dict[str, Principal] = {
            owner[0]: Principal("owner", *owner),
            publisher[0]: Principal("publisher", *publisher),
        }

    def issue_sts(self, queue: str, ttl_seconds: float) -> StsCredential:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        expires_at = time.time() + ttl_seconds
        principal = Principal(
            kind="sts",
            access_key_id="STS." + secrets.token_hex(12),
            secret=secrets.token_urlsafe(24),
            security_token="CAIS" + secrets.token_urlsafe(96),
            queue=queue,
            expires_at=expires_at,
        )
        with self._lock:
            self._principals[principal.access_key_id] = principal
        return StsCredential(
            principal.access_key_id,
            principal.secret,
            principal.security_token,
            queue,
            datetime.fromtimestamp(expires_at, tz=timezone.utc),
        )

    def expire_sts(self, access_key_id: str | None = None) -> int:
        """Ends one STS token (or all) now; returns how many were ended."""
        with self._lock:
            chosen = [
                p
                for p in self._principals.values()
                if p.kind == "sts" and (access_key_id is None or p.access_key_id == access_key_id)
            ]
            for principal in chosen:
                self._principals[principal.access_key_id] = Principal(
                    "sts", principal.access_key_id, principal.secret, principal.security_token, principal.queue, 0.0
                )
            return len(chosen)

    def lookup(self, access_key_id: str) -> Principal:
        with self._lock:
            principal = self._principals.get(access_key_id)
        if principal is None:
            raise errors.MnsError(403, "InvalidAccessKeyId", "The access Id you provided does not exist.")
        return principal


def check_token(principal: Principal, presented: str | None) -> None:
    if principal.kind != "sts":
        return
    if not presented or not secrets.compare_digest(presented, principal.security_token):
        raise errors.MnsError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
    if principal.expires_at <= time.time():
        raise errors.token_expired()


def authorize(principal: Principal, operation: str, queue: str) -> None:
    if principal.kind == "owner":
        return
    if principal.kind == "publisher" and operation in PUBLISHER_OPERATIONS:
        return
    if principal.kind == "sts" and operation in STS_OPERATIONS and queue == principal.queue:
        return
    raise errors.access_denied(
        f"The AccessKey {principal.access_key_id} is not authorized to perform {operation} on queue {queue}."
    )
