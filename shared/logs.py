"""Logging: Powertools' Logger as JSON lines, with the FC context, thread-safe keys, and no secret in any line.

- ``logger`` — service ``flow-receipts``, JSON to stdout, UTC ISO timestamps. Set the level from the settings with
  ``logger.setLevel(settings.log_level)``.
- ``bind_invocation(ctx)`` — at the top of a handler: function keys, ``function_request_id`` and the request id as
  ``correlation_id``, as thread-safe keys (FC 2.0 may run several requests on threads of one instance).
- ``message_context(message_id)`` — scopes ``message_id`` on the lines logged inside it, on this thread only.
- ``carry_context(fn)`` — run ``fn`` on another thread (a poller) with the keys of the thread that wrapped it.
- ``mask_phone(value)`` — ``13800138000`` -> ``138****8000``. Extras named like phone fields are masked for you.

No secret in a line (DESIGN.md invariants). The fc2 SDK logs full request headers — ``authorization`` and
``x-fc-security-token`` — through the ROOT logger on every error (reference/fc.md §7.4); aliyun-mns-sdk and
aliyun-python-sdk-core log signatures and tokens at DEBUG. ``install_log_safety()`` (run on import, idempotent)
puts one ``SecretRedactor`` at every stage a record passes:

1. a log-record factory: every record made by any logger — fc2's root calls, loggers and handlers created later
   (FC's runtime handler, pytest's caplog, the MNS SDK's file handler) — has its message, arguments, traceback and
   stack redacted once, when it is made;
2. a filter on the Powertools logger and on the handlers that exist (root's and ours): extras, which the factory
   cannot see, are redacted before any of them formats the record;
3. the Powertools formatter redacts the finished JSON line, the last word on what reaches stdout.

Redaction replaces registered secret values (``register_secret``: AccessKey secrets, STS tokens, webhook secrets,
in raw, JSON and percent-encoded form) and the values of sensitive fields in any common shape: header lines
(``authorization: FC id:sig``, ``security-token: …``), Python or JSON mappings (``'x-fc-security-token': '…'``,
``"SecurityToken": "…"``), queries (``Signature=…``, percent-encoded too), URL passwords and bearer tokens.
Mainland mobile numbers are masked wherever they appear.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import copy_context
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE = "flow-receipts"
REDACTED = "***"
MIN_SECRET_LENGTH = 6  # shorter registered values would blank out ordinary words
MAX_SECRETS = 256  # STS credentials rotate; the oldest (long expired) are forgotten first

# Environment variables whose values are secrets wherever they show up (FC sets them in every instance).
SECRET_ENV_VARS = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")

_T = TypeVar("_T")

# --- what a secret looks like -------------------------------------------------------------------------------

# Field / header / parameter names whose values are secret (case-insensitive, whole names).
_KEY = (
    r"[\w-]*?(?:authorization|security[-_]?token|secret|signature|passw(?:or)?d|api[-_]?key"
    r"|(?<![a-z])token)"
)
_SCHEME = r"(?:(?:FC|MNS|ACS3-HMAC-SHA256|ACS|OSS|Bearer|Basic|Digest)[ \t]+)?"
_STOP = r"[^\s,;&'\"<>(){}\[\]]"
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 'authorization': 'FC id:sig'   "SecurityToken": "…"   \"AccessKeySecret\": \"…\"   'Signature': b'…'
    re.compile(
        rf"(?P<keep>(?P<kq>\\?[\"']){_KEY}(?P=kq)\s*[:=]\s*b?(?P<vq>\\?[\"']))(?P<value>.*?)(?P=vq)",
        re.IGNORECASE,
    ),
    # SecurityToken%3D…%26 (percent-encoded query in a string to sign, once or twice encoded)
    re.compile(rf"(?P<keep>(?<![\w-]){_KEY}%(?:25)*3D)(?P<value>(?:(?!%(?:25)*26)[^\s&'\"])+)", re.IGNORECASE),
    # authorization: FC id:sig   security-token:…   x-acs-security-token : …   Signature=…&   AccessKeySecret=…
    re.compile(rf"(?P<keep>(?<![\w-]){_KEY}[ \t]*[:=][ \t]*)(?P<value>{_SCHEME}{_STOP}+)", re.IGNORECASE),
    # mysql+pymysql://user:password@host
    re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)(?P<value>[^\s/@'\"]+)(?=@)", re.IGNORECASE),
    # Bearer eyJhbGciOi…
    re.compile(r"(?P<keep>\bBearer[ \t]+)(?P<value>[A-Za-z0-9._~+/=-]{8,})"),
)
_MOBILE = re.compile(r"(?<![\w+])(?:\+?86[- ]?)?1[3-9]\d{9}(?!\w)")
_SENSITIVE_NAME = re.compile(rf"{_KEY}", re.IGNORECASE)
_PHONE_NAMES = frozenset({"phone", "phone_number", "phonenumber", "mobile", "mobile_number", "msisdn", "phones"})
_MASKED_PHONE = re.compile(r"\+?\d*\*+\d*")
_DIGITS = re.compile(r"[0-9]+")

# LogRecord attributes that are not extras.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class _CleanText(str):
    """A message already redacted (the mark travels with the message, not as an extra attribute)."""

    __slots__ = ()


class _CleanDict(dict):  # type: ignore[type-arg]
    __slots__ = ()


class _CleanList(list):  # type: ignore[type-arg]
    __slots__ = ()


def mask_phone(value: object) -> str:
    """``13800138000`` -> ``138****8000``; ``+8613800138000`` -> ``+86138****8000``.

    Short numbers show at most two digits at each end; anything that is not a phone number becomes ``****``.
    An already masked value is returned unchanged; None and empty give ``""``.
    """
    if value is None:
        return ""
    text = str(value).strip()
    if not text:
        return ""
    if _MASKED_PHONE.fullmatch(text) and "*" in text:
        return text
    plus = "+" if text.startswith("+") else ""
    digits = re.sub(r"[\s().-]", "", text[len(plus) :])
    if not _DIGITS.fullmatch(digits):
        return "****"
    if len(digits) > 14:
        return "****"
    country, national = (digits[:-11], digits[-11:]) if len(digits) > 11 else ("", digits)  # +86 138…
    if len(national) >= 11:
        masked = f"{national[:3]}****{national[-4:]}"
    elif len(national) >= 7:
        masked = f"{national[:2]}{'*' * (len(national) - 4)}{national[-2:]}"
    else:
        return "****"
    return f"{plus}{country}{masked}"


class SecretRedactor(logging.Filter):
    """Redacts secrets and masks phone numbers in a log record, in place; never drops a record.

    ``redact(text)`` and ``scrub(obj)`` are the same rules for strings and for nested dicts / lists.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._literal: re.Pattern[str] | None = None

    # -- the registry of known secret values --

    def register(self, *values: object) -> None:
        """Remember secret values (str, SecretStr, bytes; None and short values are ignored)."""
        added = False
        with self._lock:
            for value in values:
                for form in _forms(value):
                    if form not in self._secrets:
                        added = True
                    self._secrets[form] = None
                    self._secrets.move_to_end(form)
            while len(self._secrets) > MAX_SECRETS * 4:
                self._secrets.popitem(last=False)
            if added:
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._literal = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def forget_all(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._literal = None

    # -- rules --

    def redact(self, text: str) -> str:
        literal = self._literal
        if literal is not None:
            text = literal.sub(REDACTED, text)
        for pattern in _PATTERNS:
            text = pattern.sub(_keep_redacted, text)
        return _MOBILE.sub(_mask_match, text)

    def scrub(self, value: Any, key: str | None = None) -> Any:
        """A copy of ``value`` with secrets redacted, sensitive fields blanked and phone fields masked."""
        if key is not None and value is not None and value != "":
            lowered = key.lower()
            if lowered in _PHONE_NAMES:
                return [mask_phone(v) for v in value] if isinstance(value, (list, tuple)) else mask_phone(value)
            if _SENSITIVE_NAME.fullmatch(key):
                return REDACTED
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.scrub(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.scrub(v) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return self.redact(bytes(value).decode("utf-8", "replace"))
        return value

    # -- logging.Filter --

    def filter(self, record: logging.LogRecord) -> bool:
        # A cleaned message carries its own mark (its type), so a message replaced later is cleaned again.
        if not isinstance(record.msg, (_CleanText, _CleanDict, _CleanList)):
            self._clean_message(record)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and value is not None:
                record.__dict__[name] = self.scrub(value, name)
        return True

    def _clean_message(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, Mapping) and not record.args:
            record.msg = _CleanDict(self.scrub(record.msg))  # structured messages stay structured (Powertools)
        elif isinstance(record.msg, list) and not record.args:
            record.msg = _CleanList(self.scrub(record.msg))
        else:
            try:
                message = record.getMessage()
            except Exception:  # a broken %-format must not hide the record, nor bypass redaction
                message = f"{record.msg!r} % {record.args!r}"
            record.msg, record.args = _CleanText(self.redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


def _forms(value: object) -> list[str]:
    """A secret as it can appear in a line: raw, JSON-escaped, percent-encoded (once, twice, form-style)."""
    if value is None:
        return []
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    if len(text) < MIN_SECRET_LENGTH:
        return []
    once = quote(text, safe="")
    forms = {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], once, quote(once, safe="")}
    forms.add(quote_plus(text))
    return [form for form in forms if len(form) >= MIN_SECRET_LENGTH]


def _keep_redacted(match: re.Match[str]) -> str:
    if not match["value"]:
        return match[0]
    return f"{match['keep']}{REDACTED}{match.groupdict().get('vq') or ''}"


def _mask_match(match: re.Match[str]) -> str:
    return mask_phone(match[0])


_PLAIN_FORMATTER = logging.Formatter()


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter whose output goes through the redactor: fields, then the finished line."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return redactor.redact(super().serialize(log=redactor.scrub(log)))


# --- the module-level objects ---------------------------------------------------------------------------------

redactor = SecretRedactor()
logger = Logger(service=SERVICE, logger_formatter=RedactingFormatter(utc=True, use_rfc3339=True))

_install_lock = threading.Lock()
_cold_start = True


def register_secret(*values: object) -> None:
    """Never log these values (AccessKey secrets, STS tokens, webhook secrets). None and empty are ignored."""
    redactor.register(*values)


def install_log_safety(environ: Mapping[str, str] | None = None) -> None:
    """Put the redactor on every path to a log line. Idempotent; cheap enough to call on every invocation.

    Also registers the values of ``SECRET_ENV_VARS`` found in ``environ`` (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    register_secret(*(env.get(name) for name in SECRET_ENV_VARS))
    with _install_lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "_flow_receipts_redacting", False):
            logging.setLogRecordFactory(_redacting_factory(current))
        _add_filter(logging.getLogger(SERVICE), redactor)
        for handler in [logger.registered_handler, *logging.getLogger().handlers]:
            _add_filter(handler, redactor)
        for handler in logging.getLogger().handlers:
            _suppress_duplicates(handler)


def _redacting_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    factory._flow_receipts_redacting = True  # type: ignore[attr-defined]
    return factory


def _add_filter(target: logging.Filterer, new: logging.Filter) -> None:
    if new not in target.filters:
        target.addFilter(new)


def _suppress_duplicates(handler: logging.Handler) -> None:
    """What Powertools does for root handlers present at its start, also for handlers added since (FC's runtime):
    our records already went to stdout through our own handler; root's handlers must not print them again."""
    if handler is logger.registered_handler or type(handler).__module__.startswith("_pytest"):
        return
    if not any(isinstance(f, SuppressFilter) and f.logger == SERVICE for f in handler.filters):
        handler.addFilter(SuppressFilter(SERVICE))


# --- invocation and message keys --------------------------------------------------------------------------------


def bind_invocation(invocation: Any) -> dict[str, Any]:
    """Start an invocation's log context on this thread; returns the keys bound.

    ``invocation`` is an ``shared.adapters.fc.FcInvocation`` (or anything with Lambda-context attributes). Replaces this
    thread's previous keys, registers the invocation's credentials as secrets, and re-checks the log safety
    (FC may have added its own root handler after import).
    """
    global _cold_start
    install_log_safety()
    credentials = getattr(invocation, "credentials", None)
    if credentials is not None:
        register_secret(getattr(credentials, "access_key_secret", None), getattr(credentials, "security_token", None))
    with _install_lock:
        cold, _cold_start = _cold_start, False
    request_id = getattr(invocation, "aws_request_id", None) or getattr(invocation, "request_id", None)
    keys = {
        "cold_start": cold,
        "function_name": getattr(invocation, "function_name", None),
        "function_memory_size": getattr(invocation, "memory_limit_in_mb", None),
        "function_arn": getattr(invocation, "invoked_function_arn", None),
        "function_request_id": request_id,
        "correlation_id": request_id,
    }
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**keys)
    return keys


@contextmanager
def message_context(message_id: str, **keys: Any) -> Iterator[None]:
    """Log ``message_id`` (and any ``keys``) on the lines inside the block, on this thread; restores on exit."""
    previous = dict(logger.thread_safe_get_current_keys())
    logger.thread_safe_append_keys(message_id=message_id, **keys)
    try:
        yield
    finally:
        # Replace, never mutate: the dict may be shared with a context copied by carry_context.
        logger.thread_safe_clear_keys()
        if previous:
            logger.thread_safe_append_keys(**previous)


def carry_context(fn: Callable[..., _T]) -> Callable[..., _T]:
    """``fn`` run with a copy of the caller's context (its log keys) — new threads start with none.

    ``threading.Thread(target=carry_context(poll))`` or ``executor.submit(carry_context(work), …)``.
    """
    captured = copy_context()

    def run(*args: Any, **kwargs: Any) -> _T:
        return captured.copy().run(fn, *args, **kwargs)

    return run


install_log_safety()
