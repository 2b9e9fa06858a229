"""The FC 3.0 SDK (alibabacloud_fc20230330) pointed at the FC emulator, for the FC tests.

- ``fc3_client(endpoint, key, secret, token)`` — the SDK's own Client, as a user builds it;
- ``invoke3(client, name, body, ...)`` — one InvokeFunction (API 2023-03-30): (status, headers, body bytes);
- ``Fc3AsFc2`` — the same SDK behind fc2.Client's ``invoke_function(service, function, payload, headers,
  qualifier)``, so that a test written for fc2 runs through both APIs (``fc_client(kind, ...)``). It names the
  function ``<service>$<function>``, as FC 3.0 names a function migrated from FC 2.0;
- ``fc3_failure(call)`` — (HTTP status, code, message, request id) of a call FC refuses, from the SDK's exception.

A plain module: tests import it as ``from fc3_support import ...`` (tests/ is on sys.path).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import fc2
import pytest
from alibabacloud_fc20230330 import models
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions
from darabonba.exceptions import ResponseException
from requests.structures import CaseInsensitiveDict

FC2, FC3 = "fc2", "fc3"


def fc3_client(endpoint: str, access_key_id: str, secret: str, token: str | None = None, **options: Any) -> Client:
    scheme, _, host = endpoint.partition("://")
    config = Config(
        access_key_id=access_key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=host,
        protocol=scheme,
        region_id="cn-hangzhou",
        **options,
    )
    return Client(config)


def invoke3(
    client: Client,
    name: str,
    body: bytes = b"",
    *,
    invocation_type: str | None = None,
    qualifier: str | None = None,
    log_type: str | None = None,
    task_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, CaseInsensitiveDict, bytes]:
    response = client.invoke_function_with_options(
        name,
        models.InvokeFunctionRequest(body=body, qualifier=qualifier),
        models.InvokeFunctionHeaders(
            x_fc_invocation_type=invocation_type,
            x_fc_log_type=log_type,
            x_fc_async_task_id=task_id,
            common_headers=headers or None,
        ),
        RuntimeOptions(),
    )
    return response.status_code, CaseInsensitiveDict(response.headers), response.body.read()


def fc3_failure(call: Callable[[], object]) -> tuple[int, str, str, str]:
    with pytest.raises(ResponseException) as info:
        call()
    error = info.value
    data = error.data if isinstance(error.data, dict) else {}
    return int(error.status_code), str(error.code), str(data.get("Message", "")), str(data.get("RequestId", ""))


class Fc3AsFc2:
    """fc2.Client's invoke_function over the FC 3.0 SDK: the answer as fc2 gives it (``.headers``, ``.data``)."""

    def __init__(self, endpoint: str, accessKeyID: str, accessKeySecret: str, securityToken: str = "") -> None:
        self.client = fc3_client(endpoint, accessKeyID, accessKeySecret, securityToken or None)

    def invoke_function(self, serviceName, functionName, payload=None, headers=None, qualifier=None):
        extra = {name.lower(): value for name, value in (headers or {}).items()}
        body = payload.read() if hasattr(payload, "read") else (payload or b"")
        status, answer, data = invoke3(
            self.client,
            f"{serviceName}${functionName}",
            body,
            invocation_type=extra.pop("x-fc-invocation-type", None),
            log_type=extra.pop("x-fc-log-type", None),
            task_id=extra.pop("x-fc-async-task-id", None),
            qualifier=qualifier,
            headers=extra,
        )
        return SimpleNamespace(status=status, headers=answer, data=data)


def fc_client(kind: str, endpoint: str, access_key_id: str, secret: str, token: str = ""):
    """An fc2.Client, or the FC 3.0 SDK behind the same call."""
    if kind == FC3:
        return Fc3AsFc2(endpoint, access_key_id, secret, token)
    return fc2.Client(endpoint=endpoint, accessKeyID=access_key_id, accessKeySecret=secret, securityToken=token)
