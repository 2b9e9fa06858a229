"""Function Compute on loopback: the InvokeFunction endpoint of FC 2.0 (API 2016-08-15, fc2) and FC 3.0 (API
2023-03-30, alibabacloud_fc20230330) over the same functions (sync and async, with retries and an MNS on-failure
destination), the FC-shaped context, and the local runner behind `make invoke`."""

from local.fc.context import Credentials, FcContext, build_context
from local.fc.functions import FunctionSpec, TemplateError, load_template
from local.fc.server import FcEmulator

__all__ = ["Credentials", "FcContext", "FcEmulator", "FunctionSpec", "TemplateError", "build_context", "load_template"]
