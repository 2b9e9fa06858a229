"""Alicom's side of the receipt queue: the FlowReport body, and publishing it to MNS through aliyun-mns-sdk
with the publisher credential (the SDK base64-encodes the body, as Alicom's messages are)."""

from __future__ import annotations

import json
import threading

from mns.account import Account
from mns.mns_exception import MNSExceptionBase, MNSServerException
from mns.queue import Message, QueueMeta


def flow_report_body(phone: str, out_id: str, result: str, err_code: str = "", err_msg: str = "") -> str:
    """Compact JSON, keys in the documented order, every value a string (reference §4.1)."""
    report = {"phone": phone, "out_id": out_id, "result": result, "err_code": err_code, "err_msg": err_msg}
    return json.dumps({key: str(value) for key, value in report.items()}, ensure_ascii=False, separators=(",", ":"))


def error_code(error: Exception) -> str:
    if isinstance(error, MNSExceptionBase):
        return str(error.type)
    return type(error).__name__


class QueuePublisher:
    """One SDK Account per thread: the SDK client is not thread-safe."""

    def __init__(self, endpoint: str, publisher: tuple[str, str], owner: tuple[str, str]) -> None:
        self._endpoint = endpoint
        self._publisher = publisher
        self._owner = owner
        self._local = threading.local()

    def _account(self) -> Account:
        account = getattr(self._local, "account", None)
        if account is None:
            account = self._local.account = Account(self._endpoint, *self._publisher)
        return account

    def publish(self, queue: str, body: str) -> str:
        """Sends one message; returns its MNS message id. Raises the SDK's exception on failure."""
        return self._account().get_queue(queue).send_message(Message(body)).message_id

    def ensure_queue(self, queue: str) -> None:
        """Creates the queue with the owner credential unless it exists (creating an identical queue again is
        accepted by MNS; one with other attributes answers QueueAlreadyExist)."""
        owner_queue = Account(self._endpoint, *self._owner).get_queue(queue)
        try:
            owner_queue.create(QueueMeta())
        except MNSServerException as error:
            if error.type == "QueueAlreadyExist":  # exists with other attributes: keep it as it is
                return
            raise
