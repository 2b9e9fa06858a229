"""A local MNS queue service, wire-compatible with aliyun-mns-sdk 1.3.0."""

from local.mns.credentials import StsCredential
from local.mns.server import MnsEmulator

__all__ = ["MnsEmulator", "StsCredential"]
