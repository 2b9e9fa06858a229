"""Function Compute 2.0 on loopback: the InvokeFunction endpoint (sync and async, with retries and an MNS
on-failure destination), the FC-shaped context, and the local runner behind `make invoke`."""

from local.fc.context import Credentials, FcContext, build_context
from local.fc.functions import FunctionSpec, TemplateError, load_template
from local.fc.server import FcEmulator

__all__ = ["Credentials", "FcContext", "FcEmulator", "FunctionSpec", "TemplateError", "build_context", "load_template"]
