"""A local Alicom API: Dybaseapi queue tokens and the Dycdpapi flow charges, publishing FlowReports to the
MNS emulator. Reached by aliyun-python-sdk-core (CommonRequest with its domain set to `AlicomEmulator.domain`)."""

from local.alicom.accounts import DEFAULT_ACCOUNTS, queue_name
from local.alicom.server import AlicomEmulator

__all__ = ["DEFAULT_ACCOUNTS", "AlicomEmulator", "queue_name"]
