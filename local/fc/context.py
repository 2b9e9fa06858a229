"""One FC-shaped context object for both the runner and the emulator: request_id, credentials, function (name,
handler, memory, timeout), service, region, account_id; events passed as bytes.

The shape is the FC 2.0 python3.10 runtime's (reference/fc.md §4.2): `context.credentials.access_key_id`,
`context.function.name`, `context.service.log_project`, `context.region`, `context.account_id`, `context.tracing`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.fc.functions import FunctionSpec

DEFAULT_REGION = "cn-hangzhou"
DEFAULT_ACCOUNT_ID = "1234567890123456"
LATEST = "LATEST"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class FunctionMeta:
    name: str
    handler: str
    memory: int
    timeout: int


@dataclass(frozen=True)
class ServiceMeta:
    name: str
    log_project: str = ""
    log_store: str = ""
    qualifier: str = LATEST
    version_id: str = ""


@dataclass(frozen=True)
class Tracing:
    span_context: str | None = None
    jaeger_endpoint: str | None = None
    span_baggages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FcContext:
    request_id: str
    credentials: Credentials
    function: FunctionMeta
    service: ServiceMeta
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    tracing: Tracing | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for handing the context to a worker process."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FcContext:
        tracing = data.get("tracing")
        return cls(
            request_id=data["request_id"],
            credentials=Credentials(**data["credentials"]),
            function=FunctionMeta(**data["function"]),
            service=ServiceMeta(**data["service"]),
            region=data["region"],
            account_id=data["account_id"],
            tracing=Tracing(**tracing) if tracing is not None else None,
        )


def new_request_id() -> str:
    return str(uuid.uuid4())


def build_context(
    spec: FunctionSpec,
    credentials: Credentials,
    *,
    request_id: str | None = None,
    region: str | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
    qualifier: str = LATEST,
) -> FcContext:
    """The context FC would pass to `spec`'s handler (or, with `spec.initializer` as handler, its initializer)."""
    return FcContext(
        request_id=request_id or new_request_id(),
        credentials=credentials,
        function=FunctionMeta(
            name=spec.name, handler=spec.handler, memory=spec.memory, timeout=_whole_seconds(spec.timeout)
        ),
        service=ServiceMeta(
            name=spec.service, log_project=spec.log_project, log_store=spec.log_store, qualifier=qualifier
        ),
        region=region or spec.region or DEFAULT_REGION,
        account_id=account_id,
    )


def _whole_seconds(seconds: float) -> int:
    return max(1, round(seconds))
