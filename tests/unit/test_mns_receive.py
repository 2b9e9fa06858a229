"""The drainer's BatchReceiveMessage reader gives what aliyun-mns-sdk's own decoder gives, for any document."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mns.mns_exception import MNSExceptionBase
from mns.mns_xml_handler import BatchRecvMessageDecoder

from shared.adapters.mns_receive import decode_batch

FIELDS = (
    "MessageId",
    "ReceiptHandle",
    "MessageBodyMD5",
    "MessageBody",
    "EnqueueTime",
    "NextVisibleTime",
    "FirstDequeueTime",
    "DequeueCount",
    "Priority",
)
NAMESPACE = 'xmlns="http://mns.aliyuncs.com/doc/v1/"'
MESSAGE = (
    "<Message><MessageId>5F290C926D472878-2-14D9529A8FA-200000001</MessageId>"
    "<ReceiptHandle>1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==</ReceiptHandle>"
    "<MessageBodyMD5>C5DD56A39F5F7BB8B3337C6D11B6D8C7</MessageBodyMD5><MessageBody>eyJhIjogMX0=</MessageBody>"
    "<EnqueueTime>1250700979248</EnqueueTime><NextVisibleTime>1250700799348</NextVisibleTime>"
    "<FirstDequeueTime>1250700779318</FirstDequeueTime><DequeueCount>1</DequeueCount><Priority>8</Priority></Message>"
)


def outcome(decode: Any, document: str | bytes, base64decode: bool = False) -> Any:
    try:
        return [vars(entry) for entry in decode(document, base64decode, "req")]
    except MNSExceptionBase as error:
        return ("raised", type(error).__name__, error.type)
    except Exception as error:  # the SDK's decoder fails so on some documents (an element where it wants text)
        return ("raised", type(error).__name__)


def assert_same(document: str | bytes, base64decode: bool = False) -> None:
    assert outcome(decode_batch, document, base64decode) == outcome(
        BatchRecvMessageDecoder.decode, document, base64decode
    )


numbers = st.one_of(st.integers(-(2**40), 2**63).map(str), st.sampled_from([" 7 ", "", "1.5", "x", "0x10", "+3"]))
texts = st.text(max_size=40)
values = {name: (numbers if name in ("EnqueueTime", "NextVisibleTime", "FirstDequeueTime", "DequeueCount",
                                     "Priority") else texts) for name in FIELDS}  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> str:
    names = [name for name in FIELDS if draw(st.booleans()) or draw(st.booleans())]  # mostly complete
    if draw(st.booleans()):
        names.append(draw(st.sampled_from(["MessageGroupId", "Unknown", "UserProperties", "SystemProperties"])))
    names = draw(st.permutations(names))
    parts = []
    for name in names:
        value = draw(values.get(name, texts))
        form = draw(st.sampled_from(["text", "text", "text", "empty", "cdata", "comment", "child"]))
        inner = {
            "text": escape(value),
            "empty": "",
            "cdata": f"<![CDATA[{value.replace(']]>', '')}]]>",
            "comment": f"<!--c-->{escape(value)}",
            "child": f"{escape(value)}<Nested>1</Nested>",
        }[form]
        parts.append(f"<{name}>{inner}</{name}>" if inner or draw(st.booleans()) else f"<{name}/>")
    space = draw(st.sampled_from(["", "\n  ", " "]))
    return "<Message>" + space + space.join(parts) + space + "</Message>"


@st.composite
def documents(draw: st.DrawFn) -> str:
    body = "".join(draw(st.lists(messages(), max_size=4)))
    root = draw(st.sampled_from(["Messages", "Messages", "Messages", "Other"]))
    declaration = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>\n', ""]))
    document = f"{declaration}<{root} {NAMESPACE}>{body}</{root}>"
    if draw(st.integers(0, 9)) == 0:  # damaged
        cut = draw(st.integers(0, len(document)))
        document = document[:cut] + draw(st.sampled_from(["", "<", "&", "\x00"])) + document[cut + 1 :]
    return document


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.booleans())
@example(f"<Messages {NAMESPACE}>{MESSAGE * 16}</Messages>", False)
@example(f"<Messages {NAMESPACE}>{MESSAGE}</Messages>".encode(), True)
@example(f"<Messages {NAMESPACE}></Messages>", False)
@example("", False)
@example(f"<Messages>{MESSAGE}</Messages>", False)  # no namespace: minidom matches local names, ElementTree does not
@example(f'<m:Messages xmlns:m="http://mns.aliyuncs.com/doc/v1/">{MESSAGE}</m:Messages>', False)
def test_any_document_decodes_as_the_sdk_decodes_it(document: str | bytes, base64decode: bool) -> None:
    assert_same(document, base64decode)


def test_a_batch_from_the_service_is_read_without_falling_back_to_minidom(monkeypatch: Any) -> None:
    def refuse(*_args: Any) -> None:
        raise AssertionError("fell back to the SDK's decoder")

    monkeypatch.setattr(BatchRecvMessageDecoder, "decode", staticmethod(refuse))
    entries = decode_batch(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Messages {NAMESPACE}>{MESSAGE * 3}</Messages>', False
    )
    assert [entry.dequeue_count for entry in entries] == [1, 1, 1]
    assert entries[0].message_body == "eyJhIjogMX0="
    assert entries[0].receipt_handle == "1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg=="
