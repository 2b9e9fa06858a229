"""MNS XML bodies: parsing what clients send, rendering what the service answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from local.mns import errors

if TYPE_CHECKING:
    from local.mns.queues import Message, Queue

NAMESPACE = "http://mns.aliyuncs.com/doc/v1/"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "PollingWaitSeconds",
    "LoggingEnabled",
)

Property = tuple[str, str, str]  # name, value, type


@dataclass
class IncomingMessage:
    body: str
    delay_seconds: int | None = None
    priority: int | None = None
    group_id: str = ""
    user_properties: list[Property] = field(default_factory=list)
    system_properties: list[Property] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise errors.malformed_xml(str(exc)) from None


def _children(element: ElementTree.Element) -> dict[str, ElementTree.Element]:
    return {_local(child.tag): child for child in element}


def _int(element: ElementTree.Element | None, name: str) -> int | None:
    if element is None:
        return None
    text = (element.text or "").strip()
    try:
        return int(text)
    except ValueError:
        raise errors.invalid_argument(f"The value of {name} is not a valid integer: {text!r}.") from None


def root_tag(body: bytes) -> str:
    return _local(_parse(body).tag)


def parse_queue_attributes(body: bytes) -> dict[str, int | bool]:
    root = _parse(body)
    if _local(root.tag) != "Queue":
        raise errors.malformed_xml("Expected a Queue element.")
    found = _children(root)
    attributes: dict[str, int | bool] = {}
    for name in QUEUE_ATTRIBUTES:
        if name not in found:
            continue
        if name == "LoggingEnabled":
            attributes[name] = (found[name].text or "").strip().lower() == "true"
        else:
            value = _int(found[name], name)
            if value is not None:
                attributes[name] = value
    return attributes


def _parse_properties(element: ElementTree.Element | None) -> list[Property]:
    if element is None:
        return []
    result = []
    for item in element:
        parts = _children(item)
        name = (parts["Name"].text or "") if "Name" in parts else ""
        value = (parts["Value"].text or "") if "Value" in parts else ""
        kind = (parts["Type"].text or "") if "Type" in parts else "STRING"
        if not name:
            raise errors.malformed_xml("A message property has no Name.")
        result.append((name, value, kind))
    return result


def _parse_message(element: ElementTree.Element) -> IncomingMessage:
    parts = _children(element)
    if "MessageBody" not in parts:
        raise errors.malformed_xml("The Message has no MessageBody.")
    return IncomingMessage(
        body=parts["MessageBody"].text or "",
        delay_seconds=_int(parts.get("DelaySeconds"), "DelaySeconds"),
        priority=_int(parts.get("Priority"), "Priority"),
        group_id=(parts["MessageGroupId"].text or "") if "MessageGroupId" in parts else "",
        user_properties=_parse_properties(parts.get("UserProperties")),
        system_properties=_parse_properties(parts.get("SystemProperties")),
    )


def parse_messages(body: bytes) -> tuple[bool, list[IncomingMessage]]:
    """Returns (is_batch, messages) for a Send or BatchSend body."""
    root = _parse(body)
    tag = _local(root.tag)
    if tag == "Message":
        return False, [_parse_message(root)]
    if tag == "Messages":
        return True, [_parse_message(child) for child in root if _local(child.tag) == "Message"]
    raise errors.malformed_xml("Expected a Message or Messages element.")


def parse_receipt_handles(body: bytes) -> list[str]:
    root = _parse(body)
    if _local(root.tag) != "ReceiptHandles":
        raise errors.malformed_xml("Expected a ReceiptHandles element.")
    return [(child.text or "").strip() for child in root if _local(child.tag) == "ReceiptHandle"]


# ---- rendering -------------------------------------------------------------------------------------


def _element(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _document(root: str, inner: str) -> bytes:
    return f'{DECLARATION}<{root} xmlns="{NAMESPACE}">{inner}</{root}>'.encode()


def error(code: str, message: str, request_id: str, host_id: str) -> bytes:
    inner = (
        _element("Code", code)
        + _element("Message", message)
        + _element("RequestId", request_id)
        + _element("HostId", host_id)
    )
    return _document("Error", inner)


def queue(queue: Queue, counts: dict[str, int]) -> bytes:
    inner = "".join(
        [
            _element("QueueName", queue.name),
            _element("CreateTime", int(queue.create_time)),
            _element("LastModifyTime", int(queue.last_modify_time)),
            _element("DelaySeconds", queue.attributes["DelaySeconds"]),
            _element("MaximumMessageSize", queue.attributes["MaximumMessageSize"]),
            _element("MessageRetentionPeriod", queue.attributes["MessageRetentionPeriod"]),
            _element("VisibilityTimeout", queue.attributes["VisibilityTimeout"]),
            _element("PollingWaitSeconds", queue.attributes["PollingWaitSeconds"]),
            _element("ActiveMessages", counts["active"]),
            _element("InactiveMessages", counts["inactive"]),
            _element("DelayMessages", counts["delayed"]),
            _element("LoggingEnabled", "True" if queue.attributes["LoggingEnabled"] else "False"),
        ]
    )
    return _document("Queue", inner)


def _properties(name: str, item: str, properties: list[Property]) -> str:
    if not properties:
        return ""
    values = "".join(
        f"<{item}>{_element('Name', n)}{_element('Value', v)}{_element('Type', t)}</{item}>" for n, v, t in properties
    )
    return f"<{name}>{values}</{name}>"


def _message_fields(message: Message, receipt_handle: str | None) -> str:
    parts = [_element("MessageId", message.message_id)]
    if receipt_handle is not None:
        parts.append(_element("ReceiptHandle", receipt_handle))
    parts += [
        _element("MessageBodyMD5", message.body_md5),
        _element("MessageBody", message.body),
        _element("EnqueueTime", message.enqueue_ms),
    ]
    if receipt_handle is not None:
        parts.append(_element("NextVisibleTime", message.visible_at_ms))
    parts += [
        _element("FirstDequeueTime", message.first_dequeue_ms),
        _element("DequeueCount", message.dequeue_count),
        _element("Priority", message.priority),
    ]
    if message.group_id:
        parts.append(_element("MessageGroupId", message.group_id))
    parts.append(_properties("UserProperties", "PropertyValue", message.user_properties))
    parts.append(_properties("SystemProperties", "SystemPropertyValue", message.system_properties))
    return "".join(parts)


def received(messages: list[tuple[Message, str | None]], batch: bool) -> bytes:
    """Receive / Peek answers; a None handle means peek (no ReceiptHandle, no NextVisibleTime)."""
    if not batch:
        message, handle = messages[0]
        return _document("Message", _message_fields(message, handle))
    inner = "".join(f"<Message>{_message_fields(m, h)}</Message>" for m, h in messages)
    return _document("Messages", inner)


def sent(message_id: str, body_md5: str) -> bytes:
    return _document("Message", _element("MessageId", message_id) + _element("MessageBodyMD5", body_md5))


SendOutcome = tuple[str, str, bool]  # (MessageId, MessageBodyMD5, True) or (ErrorCode, ErrorMessage, False)


def batch_sent(outcomes: list[SendOutcome]) -> bytes:
    entries = []
    for first, second, ok in outcomes:
        if ok:
            entries.append(f"<Message>{_element('MessageId', first)}{_element('MessageBodyMD5', second)}</Message>")
        else:
            entries.append(f"<Message>{_element('ErrorCode', first)}{_element('ErrorMessage', second)}</Message>")
    return _document("Messages", "".join(entries))


def batch_delete_errors(failures: list[tuple[str, errors.MnsError]]) -> bytes:
    entries = "".join(
        "<Error>"
        + _element("ErrorCode", error.code)
        + _element("ErrorMessage", error.message)
        + _element("ReceiptHandle", handle)
        + "</Error>"
        for handle, error in failures
    )
    return _document("Errors", entries)


def visibility_changed(receipt_handle: str, next_visible_ms: int) -> bytes:
    return _document(
        "ChangeVisibility",
        _element("ReceiptHandle", receipt_handle) + _element("NextVisibleTime", next_visible_ms),
    )
