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
3. the Powertools formatter redacts its dict (the invocation keys, the exception), then the finished JSON line, the
   last word on what reaches stdout.

Redaction replaces registered secret values (``register_secret``: AccessKey secrets, STS tokens, webhook secrets,
in raw, JSON-escaped, percent-encoded and repr() form) and the values of sensitive fields in any common shape: header
lines (``authorization: FC id:sig``, ``security-token: …``), Python or JSON mappings (``'x-fc-security-token': '…'``,
``"SecurityToken": "…"``), assignments (``security_token='…'`` in a dataclass's repr), queries (``Signature=…``,
percent-encoded too), URL passwords and bearer tokens. Mainland mobile numbers are masked wherever they appear.

What keeps it cheap (a line costs a fraction of what Powertools spends on it, whatever the number of secrets):

- each text is redacted once: what a stage cleaned carries a mark (its type) and the later stages leave it alone;
  redacted field values and messages are remembered until the next secret is registered;
- registered values are found by a fixed number of slice look-ups per line (``_Matcher``), not by a regex of every
  value; registering one is a few milliseconds;
- a rule's regex runs only on a text that holds what the rule needs (a key word, ``://`` and ``@``, ``Bearer``, eleven
  digits): most texts need none. The checks are exact: tests/unit/test_log_redaction.py compares the result with
  every regex run on every text.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
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
# 'authorization': 'FC id:sig'   "SecurityToken": "…"   \"AccessKeySecret\": \"…\"   'Signature': b'…'
_QUOTED_FIELD = re.compile(
    rf"(?P<keep>(?P<kq>\\?[\"']){_KEY}(?P=kq)\s*[:=]\s*b?(?P<vq>\\?[\"']))(?P<value>.*?)(?P=vq)", re.IGNORECASE
)
# SecurityToken%3D…%26 (percent-encoded query in a string to sign, once or twice encoded)
_ENCODED_FIELD = re.compile(
    rf"(?P<keep>(?<![\w-]){_KEY}%(?:25)*3D)(?P<value>(?:(?!%(?:25)*26)[^\s&'\"])+)", re.IGNORECASE
)
# authorization: FC id:sig   security-token:…   x-acs-security-token : …   Signature=…&   AccessKeySecret=…
_PLAIN_FIELD = re.compile(rf"(?P<keep>(?<![\w-]){_KEY}[ \t]*[:=][ \t]*)(?P<value>{_SCHEME}{_STOP}+)", re.IGNORECASE)
# security_token='CAIS…' (a dataclass's repr)   password="…"   Authorization: "FC id:sig"   secret=\"…\"
_ASSIGNED_FIELD = re.compile(
    rf"(?P<keep>(?<![\w-]){_KEY}[ \t]*[:=][ \t]*b?(?P<vq>\\?[\"']))(?P<value>.*?)(?P=vq)", re.IGNORECASE
)
_FIELD_PATTERNS = (_QUOTED_FIELD, _ENCODED_FIELD, _PLAIN_FIELD, _ASSIGNED_FIELD)
# mysql+pymysql://user:password@host
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)(?P<value>[^\s/@'\"]+)(?=@)", re.IGNORECASE)
# Bearer eyJhbGciOi…
_BEARER = re.compile(r"(?P<keep>\bBearer[ \t]+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_PATTERNS: tuple[re.Pattern[str], ...] = (*_FIELD_PATTERNS, _URL_PASSWORD, _BEARER)
_MOBILE = re.compile(r"(?<![\w+])(?:\+?86[- ]?)?1[3-9]\d{9}(?!\w)")
_SENSITIVE_NAME = re.compile(rf"{_KEY}", re.IGNORECASE)
_PHONE_NAMES = frozenset({"phone", "phone_number", "phonenumber", "mobile", "mobile_number", "msisdn", "phones"})
_MASKED_PHONE = re.compile(r"\+?\d*\*+\d*")
_DIGITS = re.compile(r"[0-9]+")

# Cheap pre-checks: a text without what a rule needs is not run through that rule's regex.
# - _FIELD_PATTERNS need one of _KEY's words, as re.IGNORECASE matches them: the only non-ASCII characters it
#   matches to ASCII letters are _FOLDS' four (tests/unit/test_log_redaction.py checks every code point). In the text
#   _folded() makes, every such word is there in ASCII lower case; then _FIELD_ENDS says which of the patterns
#   can match: the word followed by a quote or backslash (_QUOTED_FIELD), by "%" (_ENCODED_FIELD), or by [ \t]*[:=]
#   (_PLAIN_FIELD, _ASSIGNED_FIELD).
_KEY_WORDS = ("token", "secret", "authorization", "signature", "passw")
_API_KEY = re.compile(r"api[-_]?key")
_FOLDS = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"), ("\u212a", "k"))  # İ, dotless i, long s, Kelvin
_FIELD_ENDS = re.compile(
    r"(?:token|secret|authorization|signature|passw(?:or)?d|api[-_]?key)(?:[ \t]*([:=])|([\"'\\%]))"
)
# - _URL_PASSWORD needs "://" and a later "@"; _BEARER needs "Bearer".
# - _MOBILE needs 1[3-9] and nine more digits in a row (\d: any Unicode digit, as in _MOBILE).
_PHONE_HINT = re.compile(r"1[3-9]\d{9}")

# LogRecord attributes that are not extras.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# How registered values are found (see _Matcher): forms of at least _LONG characters by the _GRAM-character slices
# of the text that start every _STRIDE characters (such a form, wherever it lies, covers one of those slices
# whole); shorter forms by a regex alternation.
_GRAM = 8
_STRIDE = 17
_LONG = _GRAM + _STRIDE - 1
_SAMPLER = re.compile(rf"(?s)(.{{{_GRAM}}}).{{0,{_STRIDE - _GRAM}}}")  # group k: the slice at k * _STRIDE
_CACHE_SIZE = 4096  # redacted texts kept per registry state (field values, messages and keys repeat)
_CACHE_MAX_CHARS = 256  # longer texts (whole lines, tracebacks) are not kept
_KIND_CACHE_SIZE = 4096
_QUIET_NUMBER = 10**10  # a number of fewer digits cannot hold a mobile number


class _CleanText(str):
    """A text already redacted: a message, an extra value (the mark travels with the value, not as an extra
    attribute, so a value replaced later is cleaned again)."""

    __slots__ = ()


class _CleanDict(dict):  # type: ignore[type-arg]
    __slots__ = ()


class _CleanList(list):  # type: ignore[type-arg]
    __slots__ = ()


_CLEAN_TYPES = frozenset({_CleanText, _CleanDict, _CleanList})
_INERT_TYPES = _CLEAN_TYPES | {bool, type(None)}  # values no rule changes (under a plain key)
_REDACTED = _CleanText(REDACTED)

# What the name of a field says about its value.
_PLAIN, _PHONE, _SENSITIVE = 0, 1, 2
_KINDS: dict[str, int] = {}
_PLAIN_NAMES: set[str] = set()  # the names in _KINDS that are plain: a whole mapping's keys are checked in one go


def _kind_of(key: object) -> int:
    if type(key) is str:
        kind = _KINDS.get(key)
        if kind is not None:
            return kind
    elif not isinstance(key, str):
        return _PLAIN
    if key.lower() in _PHONE_NAMES:
        kind = _PHONE
    elif _SENSITIVE_NAME.fullmatch(key):
        kind = _SENSITIVE
    else:
        kind = _PLAIN
    if type(key) is str:
        if len(_KINDS) >= _KIND_CACHE_SIZE:
            _PLAIN_NAMES.clear()
            _KINDS.clear()
        _KINDS[key] = kind
        if kind == _PLAIN:
            _PLAIN_NAMES.add(key)
    return kind


def _folded(text: str) -> str:
    """``text`` lowered, where each of _KEY's words that re.IGNORECASE would find is found by ``in``, followed by the
    same ASCII character (other characters may be dropped: that only finds more)."""
    if not text.isascii():
        for char, letter in _FOLDS:
            if char in text:
                text = text.replace(char, letter)
        text = text.encode("ascii", "ignore").decode("ascii")
    return text.lower()


def _field_patterns_for(text: str) -> list[re.Pattern[str]]:
    """The field patterns that may match ``text`` (usually none: it holds none of their key words)."""
    folded = _folded(text)
    for word in _KEY_WORDS:
        if word in folded:
            break
    else:
        if "key" not in folded or _API_KEY.search(folded) is None:
            return []
    ends = {match[1] or match[2] for match in _FIELD_ENDS.finditer(folded)}
    patterns = []
    if not ends.isdisjoint("\"'\\"):
        patterns.append(_QUOTED_FIELD)
    if "%" in ends:
        patterns.append(_ENCODED_FIELD)
    if not ends.isdisjoint(":="):
        patterns += (_PLAIN_FIELD, _ASSIGNED_FIELD)
    return patterns


def _hide_fields_and_phones(text: str) -> str:
    """The field rules and the phone mask, each run only on a text that can hold what it looks for.

    The pre-checks are made on the text before the first rule: a rule only puts REDACTED in the place of a value, so
    it never makes a later rule's key word, or what must follow it, appear."""
    for pattern in _field_patterns_for(text):
        text = pattern.sub(_keep_redacted, text)
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(_keep_redacted, text)
    if "Bearer" in text:
        text = _BEARER.sub(_keep_redacted, text)
    if _PHONE_HINT.search(text) is not None:
        text = _MOBILE.sub(_mask_match, text)
    return text


_SAMPLERS: dict[int, Callable[[str], tuple[str, ...]]] = {}
_SAMPLED_BY_GETTER = 4096  # texts up to this long are sliced by one itemgetter call, longer ones by _SAMPLER


def _sample(text: str) -> Sequence[str]:
    """The text's _GRAM-character slices at 0, _STRIDE, 2 * _STRIDE… (and maybe a few short or empty ones after)."""
    if len(text) > _SAMPLED_BY_GETTER:
        return _SAMPLER.findall(text)
    count = ((len(text) - _GRAM) // _STRIDE + 8) & ~7  # enough, rounded up to a multiple of 8 (and at least 8)
    getter = _SAMPLERS.get(count)
    if getter is None:
        getter = _SAMPLERS[count] = operator.itemgetter(
            *(slice(k * _STRIDE, k * _STRIDE + _GRAM) for k in range(count))
        )
    return getter(text)  # type: ignore[no-any-return]


class _Matcher:
    """Finds every occurrence of the registered forms in a text; immutable (a new one per registry change), with
    the redacted texts it has already produced (so they are forgotten when a secret is registered).

    Long forms (at least _LONG characters): for each, the _GRAM-character slices at its first _STRIDE offsets are
    indexed. An occurrence at position p covers the text's positions p .. p+_STRIDE-1, one of which is a multiple of
    _STRIDE, and the text's slice there is one of the indexed slices of the form. So the text's slices at multiples of
    _STRIDE (one itemgetter call and a few dozen set look-ups for a line, whatever the number of secrets) say whether
    it can hold a long form, and where to check. Shorter forms (MIN_SECRET_LENGTH to _LONG-1 characters, rare:
    AccessKey secrets and tokens are longer) are found by one alternation. Every occurrence is found, overlapping
    ones included; the union of their spans is replaced.
    """

    __slots__ = ("cache", "index", "min_length", "short_all", "short_any", "slices")

    def __init__(self, forms: list[str]) -> None:
        index: dict[str, list[tuple[int, str]]] = {}
        short: list[str] = []
        for form in forms:
            if len(form) >= _LONG:
                for offset in range(_STRIDE):
                    index.setdefault(form[offset : offset + _GRAM], []).append((offset, form))
            else:
                short.append(form)
        self.index = index
        self.slices = index.keys()
        lengths = [len(form) for form in short] + ([_LONG] if index else [])
        self.min_length = min(lengths) if lengths else None  # None: nothing registered
        alternation = "|".join(re.escape(form) for form in sorted(short, key=len, reverse=True))
        self.short_any = re.compile(alternation) if short else None
        self.short_all = re.compile(f"(?=({alternation}))") if short else None
        self.cache: dict[str, _CleanText] = {}

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where registered forms occur in ``text``: (start, end), unsorted, possibly overlapping."""
        found: list[tuple[int, int]] = []
        if self.index and len(text) >= _LONG:
            sampled = _sample(text)
            if not self.slices.isdisjoint(sampled):
                for k, piece in enumerate(sampled):
                    for offset, form in self.index.get(piece, ()):
                        start = k * _STRIDE - offset
                        if start >= 0 and text.startswith(form, start):
                            found.append((start, start + len(form)))
        if self.short_any is not None and self.short_any.search(text) is not None:
            found.extend((match.start(), match.end(1)) for match in self.short_all.finditer(text))  # type: ignore[union-attr]
        return found

    def hide(self, text: str) -> str:
        found = self.spans(text)
        if not found:
            return text
        found.sort()
        parts, done = [], 0
        start, end = found[0]
        for next_start, next_end in found[1:]:
            if next_start < end:  # overlapping: one span
                end = max(end, next_end)
                continue
            parts += (text[done:start], REDACTED)
            done, (start, end) = end, (next_start, next_end)
        parts += (text[done:start], REDACTED, text[end:])
        return "".join(parts)

    def redact(self, text: str) -> str:
        """Registered values, sensitive fields and phone numbers hidden in ``text``."""
        cacheable = len(text) <= _CACHE_MAX_CHARS
        if cacheable:
            done = self.cache.get(text)
            if done is not None:
                return done
        clean = text
        if self.min_length is not None and len(clean) >= self.min_length:
            clean = self.hide(clean)
        clean = _hide_fields_and_phones(clean)
        if not cacheable:
            return clean
        done = _CleanText(clean)
        cache = self.cache
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[text] = done
        return done


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


_MASKED: dict[str, str] = {}


def _masked(value: object) -> str:
    """mask_phone(value), remembered for texts (a message's phone number is logged on each of its lines)."""
    if type(value) is not str:
        return mask_phone(value)
    done = _MASKED.get(value)
    if done is None:
        done = mask_phone(value)
        if len(_MASKED) >= _KIND_CACHE_SIZE:
            _MASKED.clear()
        _MASKED[value] = done
    return done


class SecretRedactor(logging.Filter):
    """Redacts secrets and masks phone numbers in a log record, in place; never drops a record.

    ``redact(text)`` and ``scrub(obj)`` are the same rules for strings and for nested dicts / lists. What it has
    cleaned carries a mark (its type: a ``str``, ``dict`` or ``list`` subclass) so that the later stages a record
    passes do not clean it again; a value put in its place later has no mark and is cleaned.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._matcher = _Matcher([])

    # -- the registry of known secret values --

    def register(self, *values: object) -> None:
        """Remember secret values (str, SecretStr, bytes; None and short values are ignored).

        Every line logged after it returns, on any thread, hides them (a line already on its way may not)."""
        with self._lock:
            added = False
            for value in values:
                for form in _forms(value):
                    if form not in self._secrets:
                        added = True
                    self._secrets[form] = None
                    self._secrets.move_to_end(form)
            while len(self._secrets) > MAX_SECRETS * 4:
                self._secrets.popitem(last=False)
            if added:
                self._matcher = _Matcher(list(self._secrets))  # one reference swap: loggers see old or new

    def forget_all(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._matcher = _Matcher([])

    # -- rules --

    def redact(self, text: str) -> str:
        """``text`` with secrets redacted and phone numbers masked (a plain ``str``: the marks stay inside)."""
        return str.__str__(self._matcher.redact(text))

    def scrub(self, value: Any, key: str | None = None) -> Any:
        """A copy of ``value`` with secrets redacted, sensitive fields blanked and phone fields masked."""
        return self._scrub(value, _PLAIN if key is None else _kind_of(key), self._matcher)

    def _scrub(self, value: Any, kind: int, matcher: _Matcher) -> Any:
        if kind != _PLAIN and value is not None and not (isinstance(value, str) and not value):
            if kind == _PHONE:
                return [_masked(v) for v in value] if isinstance(value, (list, tuple)) else _masked(value)
            return _REDACTED
        kind_of_value = type(value)
        if kind_of_value is str:
            return matcher.redact(value)
        if kind_of_value in _INERT_TYPES:
            return value
        if kind_of_value is int or kind_of_value is float:
            # A number shaped like a mobile number would be masked in the finished line, as text: mask it here.
            if -_QUIET_NUMBER < value < _QUIET_NUMBER or not _PHONE_HINT.search(text := repr(value)):
                return value
            return matcher.redact(text)
        if kind_of_value is dict:
            return self._scrub_mapping(value, matcher)
        if kind_of_value is list or kind_of_value is tuple:
            return _CleanList([self._scrub(v, _PLAIN, matcher) for v in value])
        if isinstance(value, str):
            return matcher.redact(value)
        if isinstance(value, Mapping):
            return self._scrub_mapping(value, matcher)
        if isinstance(value, (list, tuple, set, frozenset)):
            return _CleanList([self._scrub(v, _PLAIN, matcher) for v in value])
        if isinstance(value, (bytes, bytearray)):
            return matcher.redact(bytes(value).decode("utf-8", "replace"))
        return value

    def _scrub_mapping(self, mapping: Mapping[Any, Any], matcher: _Matcher) -> _CleanDict:
        clean = _CleanDict(mapping)
        cache, all_plain = matcher.cache, mapping.keys() <= _PLAIN_NAMES  # usually: every name known to be plain
        for key, value in mapping.items():
            if not all_plain and key not in _PLAIN_NAMES:
                kind = _kind_of(key)
                if kind != _PLAIN:
                    clean[key] = self._scrub(value, kind, matcher)
                    continue
            kind_of_value = type(value)  # the common cases inline: a text seen before, a value no rule changes
            if kind_of_value is str:
                done = cache.get(value)
                clean[key] = done if done is not None else matcher.redact(value)
            elif kind_of_value not in _INERT_TYPES and (
                kind_of_value is not int or not -_QUIET_NUMBER < value < _QUIET_NUMBER
            ):
                clean[key] = self._scrub(value, _PLAIN, matcher)
        return clean

    # -- logging.Filter --

    def filter(self, record: logging.LogRecord) -> bool:
        # A cleaned message carries its own mark (its type), so a message replaced later is cleaned again.
        if type(record.msg) not in _CLEAN_TYPES:
            self._clean_message(record)
        attributes = record.__dict__
        if attributes.keys() <= _STANDARD_ATTRS:  # no extras (always so when the record is made)
            return True
        names = attributes.keys() - _STANDARD_ATTRS
        matcher, all_plain = self._matcher, names <= _PLAIN_NAMES
        for name in names:
            value = attributes[name]
            if not all_plain and name not in _PLAIN_NAMES:
                kind = _kind_of(name)
                if kind != _PLAIN:
                    attributes[name] = self._scrub(value, kind, matcher)
                    continue
            kind_of_value = type(value)
            if kind_of_value not in _INERT_TYPES and (  # not cleaned already (marked), nor a value no rule changes
                kind_of_value is not int or not -_QUIET_NUMBER < value < _QUIET_NUMBER
            ):
                attributes[name] = self._scrub(value, _PLAIN, matcher)
        return True

    def _clean_message(self, record: logging.LogRecord) -> None:
        msg = record.msg
        if type(msg) is not str and not record.args and isinstance(msg, (Mapping, list)):
            record.msg = self.scrub(msg)  # structured messages stay structured (Powertools)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a broken %-format must not hide the record, nor bypass redaction
                message = f"{record.msg!r} % {record.args!r}"
            clean = self._matcher.redact(message)
            record.msg, record.args = clean if type(clean) is _CleanText else _CleanText(clean), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._matcher.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._matcher.redact(record.stack_info)


def _forms(value: object) -> list[str]:
    """A secret as it can appear in a line: raw, JSON-escaped, percent-encoded (once, twice, form-style), and as
    repr() writes it, as text and as UTF-8 bytes (``%r`` arguments, a dict of headers formatted into a message, a
    body logged as bytes)."""
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
    forms.add(repr(text)[1:-1])
    forms.add(repr(text.encode("utf-8", "surrogatepass"))[2:-1])
    return [form for form in forms if len(form) >= MIN_SECRET_LENGTH]


def _keep_redacted(match: re.Match[str]) -> str:
    value = match["value"]
    bare = value.rstrip("\\")
    if not bare:  # nothing, or only the backslash of what follows (a JSON line's \")
        return match[0]
    escape = value[len(bare) :]  # backslashes that escape what follows stay with it
    return f"{match['keep']}{REDACTED}{escape}{match.groupdict().get('vq') or ''}"


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
