"""BatchReceiveMessage through aliyun-mns-sdk, its response document read by ElementTree instead of minidom.

The SDK (pinned: 1.3.0) builds a DOM with xml.dom.minidom for every response: for a batch of 16 that is about 45 µs a
message, a sixth of the drainer's CPU per receipt. ``ReceiveClient`` is the SDK's client with one method replaced:
request, validation, signing, the STS header, HTTP and the status check are the SDK's own, and the <Messages> document
becomes the SDK's own ``ReceiveMessageResponseEntry`` objects with the same fields and values. A document this reader
does not handle exactly as minidom would (message properties, comments, CDATA, processing instructions, prefixed or
nested elements, anything malformed) goes to the SDK's decoder, so its results and errors are the SDK's.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ElementTree
from typing import Any

from mns.mns_client import MNSClient
from mns.mns_http import RequestInternal
from mns.mns_request import ReceiveMessageResponseEntry
from mns.mns_tool import BatchReceiveMessageValidator
from mns.mns_xml_handler import BatchRecvMessageDecoder

_NAMESPACE = "{http://mns.aliyuncs.com/doc/v1/}"
_INTEGERS = {
    "DequeueCount": "dequeue_count",
    "EnqueueTime": "enqueue_time",
    "FirstDequeueTime": "first_dequeue_time",
    "Priority": "priority",
    "NextVisibleTime": "next_visible_time",
}
_TEXTS = {"MessageId": "message_id", "MessageBodyMD5": "message_body_md5", "ReceiptHandle": "receipt_handle"}


class _Unhandled(Exception):
    """Not a document this reader treats exactly as the SDK's decoder: let the SDK decode it."""


def decode_batch(xml_data: str | bytes, base64decode: bool, req_id: str | None = None) -> list[Any]:
    """What ``BatchRecvMessageDecoder.decode`` returns (and raises) for the same arguments."""
    try:
        return _decode(xml_data, base64decode)
    except (_Unhandled, ElementTree.ParseError, KeyError, ValueError, TypeError):
        return BatchRecvMessageDecoder.decode(xml_data, base64decode, req_id)


def _decode(xml_data: str | bytes, base64decode: bool) -> list[Any]:
    text = xml_data if isinstance(xml_data, str) else xml_data.decode("utf-8")
    if "<!" in text or text.find("<?", 1) != -1 or "Properties>" in text:
        raise _Unhandled
    root = ElementTree.fromstring(text)
    if root.tag != _NAMESPACE + "Messages":
        raise _Unhandled
    entries = []
    for element in root:
        if element.tag != _NAMESPACE + "Message":
            raise _Unhandled
        fields: dict[str, str] = {}
        for child in element:
            if len(child) or not child.tag.startswith(_NAMESPACE):
                raise _Unhandled
            if child.text:  # minidom: an element without children is left out
                fields[child.tag[len(_NAMESPACE) :]] = child.text
        entries.append(_entry(fields, base64decode))
    return entries


def _entry(fields: dict[str, str], base64decode: bool) -> Any:
    entry = ReceiveMessageResponseEntry()
    body = fields["MessageBody"]
    entry.message_body = base64.b64decode(body) if base64decode else body
    for name, attribute in _INTEGERS.items():
        setattr(entry, attribute, int(fields[name]))
    for name, attribute in _TEXTS.items():
        setattr(entry, attribute, fields[name])
    entry.message_group_id = fields.get("MessageGroupId", "")
    return entry


class ReceiveClient(MNSClient):
    """aliyun-mns-sdk's MNSClient; BatchReceiveMessage's response read by ``decode_batch``."""

    def batch_receive_message(self, req: Any, resp: Any) -> None:  # MNSClient.batch_receive_message, but the decoder
        BatchReceiveMessageValidator.validate(req)
        uri = f"/queues/{req.queue_name}/messages?numOfMessages={req.batch_size}"
        if req.wait_seconds != -1:
            uri += f"&waitseconds={req.wait_seconds}"
        req_inter = RequestInternal(req.method, uri)
        self.build_header(req, req_inter)
        resp_inter = self.http.send_request(req_inter)
        resp.status = resp_inter.status
        resp.header = resp_inter.header
        self.check_status(req_inter, resp_inter, resp)
        if resp.error_data == "":
            resp.message_list = decode_batch(resp_inter.data, req.base64decode, req_inter.get_req_id())
