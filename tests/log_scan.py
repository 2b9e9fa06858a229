"""pytest plugin: the captured logs of the whole session are scanned for the test secrets (DESIGN.md: no secret in
any log line). Registered by tests/conftest.py (``pytest_plugins = ["log_scan"]``), or ``-p log_scan``.

What is captured, for the whole session, in this process:

- every log record that reaches the root logger or the Powertools logger (``flow-receipts``): its message, its
  ``extra`` fields (from ``record.__dict__``, serialised as Powertools does), its traceback and stack. The capture
  handlers see a record as the logger emits it: handler filters that other code attaches to them are not applied;
- everything the Powertools logger's handler writes to its stream (stdout or stderr): the stream is teed.

The secrets looked for, by value (each matched raw, JSON-escaped and percent-encoded):

- the secret constants of tests/emulator_credentials.py, ``SECRETS`` of tests/pipeline_support.py, the secrets of
  tests/integration/test_alicom_support.py;
- every STS secret and token that an MNS emulator issues during the run (``CredentialStore.issue_sts`` is wrapped);
- every secret an emulator verifies a request with (the AccessKey secrets of MNS, Alicom RPC and V3, FC 2.0 and 3.0,
  the webhook receiver's secret: the server-side signing functions of local/ are wrapped), and the secrets and STS
  tokens an FC or Alicom emulator is configured to accept (``FcEmulator.__init__`` and the Alicom account book).

And by shape, whatever their value (``SHAPES``): signatures (an ``MNS id:sig`` / ``FC id:sig`` Authorization value,
a ``Signature`` query parameter or field with its value, as RPC and ACS3 carry it, a webhook ``v1=<64 hex>``), and
mainland mobile numbers that are not masked (``13800138000``; ``138****8000`` is fine). STS tokens are looked for by
value only: every token in a test run is issued or accepted by an emulator (the fuzz tests of the redactor log
fragments of ``CAIS…`` tokens on purpose).

At the end of the session, a line containing any of them fails the run: the terminal summary names the kind of
secret, the test that was running, and the line with the secret masked.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

TESTS = Path(__file__).resolve().parent
POWERTOOLS_LOGGER = "flow-receipts"
MIN_SECRET_LENGTH = 6  # shorter values would match ordinary words
MAX_REPORTED = 20
MAX_LINE_CHARS = 500
MASK = "<masked>"
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_SECRET_NAME = re.compile(r"(SECRET|(^|_)SK)$")


# --- the secrets -------------------------------------------------------------------------------------------------


def _forms(value: str) -> set[str]:
    once = quote(value, safe="")
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], once, quote(once, safe="")}
    forms.add(quote_plus(value))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class SecretBook:
    """Secret values by kind; finds and masks them in text. Thread-safe (emulator threads add STS secrets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}  # form -> kind
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False

    def add(self, kind: str, value: object) -> None:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH or value in self._values:
            return  # (the membership test outside the lock is only a fast path: emulators add on every request)
        with self._lock:
            self._values.add(value)
            for form in _forms(value):
                if form not in self._kinds:
                    self._kinds[form] = kind
                    self._dirty = True

    def __len__(self) -> int:
        """How many secret values (each is matched in several forms)."""
        return len(self._values)

    def kinds(self) -> set[str]:
        with self._lock:
            return set(self._kinds.values())

    def _current(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._dirty:
                ordered = sorted(self._kinds, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
                self._dirty = False
            return self._pattern

    def find(self, text: str) -> list[str]:
        """The kinds of the secrets in ``text`` (each once, in order of appearance)."""
        pattern = self._current()
        if pattern is None or not text:
            return []
        found = [self._kinds[match[0]] for match in pattern.finditer(text)]
        return list(dict.fromkeys(found))

    def mask(self, text: str) -> str:
        pattern = self._current()
        return pattern.sub(lambda match: f"{MASK[:-1]}:{self._kinds[match[0]]}>", text) if pattern else text


# Secrets recognised by their shape. Each pattern's group "value" is what the report masks.
SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "signature (MNS / FC Authorization value)",
        re.compile(r"(?<![\w-])(?:MNS|FC)[ \t]+[^\s:'\"]+:(?P<value>[A-Za-z0-9+/]{27,}={0,2})"),
    ),
    (
        "signature (Signature parameter or field)",
        re.compile(
            r"(?<![\w-])Signature(?:\\?[\"'])?[ \t]*(?:=|:|%3[Dd])[ \t]*(?:\\?[\"'])?(?:b[\"'])?"
            r"(?P<value>[A-Za-z0-9+/%_-]{16,}={0,2})"
        ),
    ),
    ("webhook signature (v1=...)", re.compile(r"(?<![\w-])v1=(?P<value>[0-9a-fA-F]{64})(?![0-9a-fA-F])")),
    (
        "unmasked mobile phone number",
        re.compile(r"(?<![\w+*])(?P<value>(?:\+?86[- ]?)?1[3-9]\d{9})(?![\w*])"),
    ),
)
# A text needs one of these for a shape to be possible (most texts have none; the regexes then never run).
_SHAPE_HINT = re.compile(r"MNS|FC|Signature|v1=|1[3-9]\d{9}")


def find_shapes(text: str) -> list[str]:
    if not text or _SHAPE_HINT.search(text) is None:
        return []
    return [kind for kind, pattern in SHAPES if pattern.search(text)]


def mask_shapes(text: str) -> str:
    for kind, pattern in SHAPES:
        text = pattern.sub(lambda m, kind=kind: m[0].replace(m["value"], f"{MASK[:-1]}:{kind}>"), text)
    return text


def _load(path: Path) -> ModuleType | None:
    """A test support module by path, under a private name (no import side effects on the suite's own copy)."""
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_log_scan_{path.stem}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _named_secrets(module: ModuleType) -> dict[str, str]:
    """Module constants named like secrets (``OWNER_SECRET``, ``SK``, ``OTHER_SK``...)."""
    return {
        name: value
        for name, value in vars(module).items()
        if _SECRET_NAME.search(name) and isinstance(value, str) and not name.startswith("_")
    }


def _name_of(module: ModuleType, secret: str) -> str:
    """Where a value of ``SECRETS`` comes from: ``CUSTOMER_SK`` or ``ALICOM_OWNER[1]``."""
    for name, value in vars(module).items():
        if name.startswith("_") or name == "SECRETS":
            continue
        if value == secret:
            return name
        if isinstance(value, tuple) and secret in value:
            return f"{name}[{value.index(secret)}]"
    return "SECRETS"


def collect_constant_secrets(book: SecretBook, tests: Path = TESTS) -> None:
    credentials = _load(tests / "emulator_credentials.py")
    if credentials is not None:
        for name, value in _named_secrets(credentials).items():
            book.add(f"emulator_credentials.{name}", value)
    pipeline = _load(tests / "pipeline_support.py")
    if pipeline is not None:
        for value in getattr(pipeline, "SECRETS", ()):
            book.add(f"pipeline_support.{_name_of(pipeline, value)}", value)
    alicom = _load(tests / "integration" / "test_alicom_support.py")
    if alicom is not None:
        for name, value in _named_secrets(alicom).items():
            book.add(f"test_alicom_support.{name}", value)


# --- what is captured ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    kind: str
    test: str
    source: str
    line: str


class Scanner:
    def __init__(self) -> None:
        self.book = SecretBook()
        self.current_test = "(outside any test)"
        self.lines_scanned = 0
        self.leaks: dict[Leak, int] = {}
        self._lock = threading.Lock()

    def scan(self, text: str, source: str) -> None:
        with self._lock:
            self.lines_scanned += text.count("\n") + 1
        if not self.book.find(text) and not find_shapes(text):
            return
        for line in text.splitlines() or [text]:
            for kind in self.book.find(line) + find_shapes(line):
                masked = mask_shapes(self.book.mask(line))
                if len(masked) > MAX_LINE_CHARS:
                    masked = masked[:MAX_LINE_CHARS] + "…"
                leak = Leak(kind, self.current_test, source, masked)
                with self._lock:
                    self.leaks[leak] = self.leaks.get(leak, 0) + 1

    def report(self) -> list[str]:
        lines = []
        ordered = sorted(self.leaks.items(), key=lambda item: (item[0].test, item[0].kind))
        for leak, count in ordered[:MAX_REPORTED]:
            times = f" ({count} times)" if count > 1 else ""
            lines.append(f"{leak.kind} leaked{times} during {leak.test}, in {leak.source}:\n    {leak.line}")
        if len(self.leaks) > MAX_REPORTED:
            lines.append(f"... and {len(self.leaks) - MAX_REPORTED} more")
        return lines


def render(record: logging.LogRecord) -> str:
    """A record as a line: logger, level, message, extras (JSON, as Powertools writes them), traceback, stack."""
    try:
        message = record.getMessage()
    except Exception:
        message = f"{record.msg!r} % {record.args!r}"
    parts = [f"{record.name} {record.levelname} {message}"]
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
    if extras:
        try:
            parts.append(json.dumps(extras, default=str, ensure_ascii=False))
        except (TypeError, ValueError):
            parts.append(repr(extras))
    if record.exc_text:
        parts.append(record.exc_text)
    elif record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return " | ".join(parts)


class ScanHandler(logging.Handler):
    """Sees every record the logger it sits on emits, whatever filters other code adds to it later."""

    def __init__(self, scanner: Scanner, seen: weakref.WeakSet) -> None:
        super().__init__(logging.NOTSET)
        self._scanner = scanner
        self._seen = seen  # shared by both handlers: a propagated record is scanned once

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the scan must never break the code under test
            if record in self._seen:
                return
            self._seen.add(record)
            self._scanner.scan(render(record), f"log record {record.name} {record.levelname}")


class TeeStream:
    """Passes everything through to the stream it wraps, and scans it."""

    def __init__(self, stream: Any, scanner: Scanner, source: str) -> None:
        self.wrapped = stream
        self._scanner = scanner
        self._source = source

    def write(self, text: str) -> int:
        written = self.wrapped.write(text)
        with contextlib.suppress(Exception):  # the scan must never break the code under test
            self._scanner.scan(text, self._source)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


# --- the plugin ------------------------------------------------------------------------------------------------------


class LogScan:
    def __init__(self) -> None:
        self.scanner = Scanner()
        self._seen: weakref.WeakSet = weakref.WeakSet()
        self._handlers: list[tuple[logging.Logger, ScanHandler]] = []
        self._original_issue_sts: Any = None
        self._wrapped: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) to put back
        self._powertools_handler: logging.StreamHandler | None = None
        self.sts_issued = 0
        self.workers: list[dict[str, Any]] = []  # what pytest-xdist workers scanned (the controller reports it)

    # -- setup / teardown --

    def install(self) -> None:
        collect_constant_secrets(self.scanner.book)
        for logger in (logging.getLogger(), logging.getLogger(POWERTOOLS_LOGGER)):
            handler = ScanHandler(self.scanner, self._seen)
            logger.addHandler(handler)
            self._handlers.append((logger, handler))
        self._wrap_issue_sts()
        self._wrap_emulator_secrets()
        self.ensure_tee()

    def uninstall(self) -> None:
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        self._handlers.clear()
        for owner, attribute, original in reversed(self._wrapped):
            setattr(owner, attribute, original)
        self._wrapped.clear()
        if self._original_issue_sts is not None:
            from local.mns.credentials import CredentialStore

            CredentialStore.issue_sts = self._original_issue_sts
            self._original_issue_sts = None
        handler = self._powertools_handler
        if handler is not None and isinstance(handler.stream, TeeStream):
            handler.setStream(handler.stream.wrapped)

    def _wrap_issue_sts(self) -> None:
        from local.mns.credentials import CredentialStore

        original = CredentialStore.issue_sts
        book = self.scanner.book

        @functools.wraps(original)
        def issue_sts(store: CredentialStore, queue: str, ttl_seconds: float):  # type: ignore[no-untyped-def]
            credential = original(store, queue, ttl_seconds)
            self.sts_issued += 1
            book.add("MNS STS AccessKey secret (issued during the run)", credential.access_key_secret)
            book.add("MNS STS security token (issued during the run)", credential.security_token)
            return credential

        self._original_issue_sts = original
        CredentialStore.issue_sts = issue_sts  # type: ignore[method-assign]

    def _wrap(self, owner: Any, attribute: str, make: Any) -> None:
        original = getattr(owner, attribute)
        setattr(owner, attribute, functools.wraps(original)(make(original)))
        self._wrapped.append((owner, attribute, original))

    def _wrap_emulator_secrets(self) -> None:
        """Every secret an emulator verifies a request with, and the STS tokens the FC emulator accepts, join the
        book the first time they are used (the emulators' own server-side code, not the product's)."""
        from local import acs3
        from local.alicom import accounts as alicom_accounts
        from local.alicom import signing as alicom_signing
        from local.fc import server as fc_server
        from local.fc import signing as fc_signing
        from local.mns import signing as mns_signing
        from local.webhook import signing as webhook_signing

        book = self.scanner.book

        def recording(kind: str):  # type: ignore[no-untyped-def]
            def make(original):  # type: ignore[no-untyped-def]
                def wrapper(secret, *args, **kwargs):  # type: ignore[no-untyped-def]
                    book.add(kind, secret)
                    return original(secret, *args, **kwargs)

                return wrapper

            return make

        self._wrap(mns_signing, "signature", recording("MNS AccessKey secret (verified by an MNS emulator)"))
        self._wrap(alicom_signing, "signature", recording("Alicom AccessKey secret (verified by the RPC emulator)"))
        self._wrap(acs3, "signature", recording("AccessKey secret (verified by a V3 emulator: Alicom or FC 3.0)"))
        self._wrap(fc_signing, "signature", recording("FC AccessKey secret (verified by the FC 2.0 emulator)"))
        self._wrap(webhook_signing, "problem", recording("webhook secret (verified by the webhook receiver)"))

        def make_fc_init(original):  # type: ignore[no-untyped-def]
            def __init__(emulator, *args, **kwargs):  # type: ignore[no-untyped-def]
                credentials = kwargs.get("credentials") or {}
                for value in credentials.values():
                    secret, token = (value, "") if isinstance(value, str) else value[:2]
                    book.add("FC AccessKey secret (configured in an FC emulator)", secret)
                    book.add("FC STS security token (configured in an FC emulator)", token)
                function = kwargs.get("function_credentials")
                if function is not None:
                    book.add("FC function secret (configured in an FC emulator)", function.access_key_secret)
                    book.add("FC function STS token (configured in an FC emulator)", function.security_token)
                original(emulator, *args, **kwargs)

            return __init__

        self._wrap(fc_server.FcEmulator, "__init__", make_fc_init)

        def make_customer(original):  # type: ignore[no-untyped-def]
            def customer(access_key_id, value):  # type: ignore[no-untyped-def]
                made = original(access_key_id, value)
                book.add("Alicom AccessKey secret (configured in an Alicom emulator)", made.secret)
                book.add("Alicom STS token (configured in an Alicom emulator)", made.security_token)
                return made

            return customer

        self._wrap(alicom_accounts, "_customer", make_customer)

    def ensure_tee(self) -> None:
        """Tee the Powertools handler's stream (again, if a test pointed it elsewhere and did not restore it)."""
        from shared.logs import logger

        handler = logger.registered_handler
        if not isinstance(handler, logging.StreamHandler):
            return
        self._powertools_handler = handler
        if not isinstance(handler.stream, TeeStream):
            name = getattr(handler.stream, "name", None) or type(handler.stream).__name__
            handler.setStream(TeeStream(handler.stream, self.scanner, f"Powertools output ({name})"))

    # -- hooks --

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self.scanner.current_test = nodeid
        self.ensure_tee()

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        self.ensure_tee()
        self.scanner.current_test = f"(after {nodeid})"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # a pytest-xdist worker: the controller reports and fails the session
            workeroutput["log_scan"] = {
                "lines": self.scanner.lines_scanned,
                "secrets": len(self.scanner.book),
                "sts": self.sts_issued,
                "leaks": self.scanner.report() if self.scanner.leaks else [],
            }
        leaked = self.scanner.leaks or any(worker["leaks"] for worker in self.workers)
        if leaked and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """pytest-xdist: a worker finished; its scan's figures come back in its workeroutput."""
        result = getattr(node, "workeroutput", {}).get("log_scan")
        if result is not None:
            self.workers.append(result)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        scanner = self.scanner
        lines = scanner.lines_scanned + sum(worker["lines"] for worker in self.workers)
        secrets = max([len(scanner.book), *(worker["secrets"] for worker in self.workers)])
        sts = self.sts_issued + sum(worker["sts"] for worker in self.workers)
        report = scanner.report() if scanner.leaks else []
        for worker in self.workers:
            report += worker["leaks"]
        where = f" in {len(self.workers)} workers" if self.workers else ""
        if not report:
            terminalreporter.write_line(
                f"log scan: {lines} log lines scanned{where} for {secrets} secret values "
                f"({sts} STS credentials issued during the run): no leak"
            )
            return
        terminalreporter.write_sep("=", "log scan: secrets leaked into the logs", red=True, bold=True)
        for line in report:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"log scan FAILED among {lines} lines scanned{where}; the session fails")


_PLUGIN_NAME = "log-scan-instance"


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.has_plugin(_PLUGIN_NAME):
        return
    plugin = LogScan()
    plugin.install()
    config.pluginmanager.register(plugin, _PLUGIN_NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if plugin is not None:
        plugin.uninstall()
        config.pluginmanager.unregister(plugin)
