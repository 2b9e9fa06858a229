"""The redactor's guarantee, checked broadly rather than by example (tests/unit/test_logs.py has the examples).

- Its fast paths change nothing: on random texts (registered secrets in every form, overlapping and adjacent,
  field names in any case and with the characters re.IGNORECASE folds, phone numbers, URLs, Unicode), ``redact``
  gives exactly what a plain reference gives — every occurrence of every registered form found by ``str.find``, then
  every rule's regex run on every text — and no registered form is left.
- Every registered secret, in every form, inside random text, is hidden in what every handler prints: ours, root's,
  a handler added later, a logger created later, caplog; in messages, %-args, extras, tracebacks and stack info.
- Registering while other threads log is safe, and a value registered is hidden from the moment ``register`` returns.
- The pre-checks' assumption about re.IGNORECASE holds for every code point.

Random checks use a fixed seed, so a failure is reproducible.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import string
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from shared import logs
from shared.logs import SecretRedactor, logger, register_secret

SEED = 20261201
ALPHABET = string.ascii_letters + string.digits + " \t\n:=,;&'\"<>(){}[]%+/\\-_.@*#?!~"
UNICODE = "中文充值失败\u0130\u0131\u017f\u212aé\u00a0\u3000１３８０"  # dotted I, dotless i, long s, Kelvin sign…
KEY_NAMES = (
    "token",
    "Token",
    "SecurityToken",
    "x-fc-security-token",
    "security_token",
    "AUTHORIZATION",
    "Authorization",
    "author\u0130zation",
    "AUTHOR\u0131ZATION",
    "\u017fecret",
    "AccessKeySecret",
    "to\u212aen",  # Kelvin sign
    "api_key",
    "apiKEY",
    "api-key",
    "passwd",
    "Password",
    "signature",
    "Signature",
    "tokens",
    "my_token_id",
)
SEPARATORS = (": ", ":", "=", " = ", "': '", '": "', "':'", '\\": \\"', "%3D", "%253D", "%26", "&", "\t:\t", "'", '"')


def reference_redact(text: str, forms: list[str]) -> str:
    """What redact must give: the union of every occurrence of every form replaced, then every rule, unconditionally."""
    spans = []
    for form in forms:
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + 1)
    if spans:
        spans.sort()
        merged = [list(spans[0])]
        for start, end in spans[1:]:
            if start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        parts, done = [], 0
        for start, end in merged:
            parts += [text[done:start], logs.REDACTED]
            done = end
        text = "".join([*parts, text[done:]])
    for pattern in logs._PATTERNS:
        text = pattern.sub(logs._keep_redacted, text)
    return logs._MOBILE.sub(logs._mask_match, text)


def random_secret(rng: random.Random, length: int) -> str:
    pool = string.ascii_letters + string.digits + "+/=-_" + "\"'\\ %&:\x01" + "秘密é"
    return "".join(rng.choice(pool) for _ in range(length))


def sts_token(rng: random.Random) -> str:
    import base64

    return "CAIS" + base64.b64encode(rng.randbytes(rng.randint(60, 450))).decode()


def make_secrets(rng: random.Random) -> list[str]:
    secrets = [random_secret(rng, rng.choice((6, 7, 9, 12, 17, 23, 24, 25, 30, 44, 80))) for _ in range(14)]
    secrets += [sts_token(rng) for _ in range(4)]
    secrets.append(secrets[-1][37:] + "tail-of-overlap")  # overlaps the end of another secret
    secrets.append("ov" + secrets[0] + secrets[1][:4])  # contains another one
    secrets.append(secrets[2][3:])  # a suffix of another one
    return secrets


def random_text(rng: random.Random, secrets: list[str], forms: list[str]) -> str:
    pieces = []
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.25:
            pieces.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))))
        elif roll < 0.32:
            pieces.append("".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 4))))
        elif roll < 0.47:
            pieces.append(rng.choice(forms))
        elif roll < 0.52:
            secret = rng.choice(secrets)
            cut = rng.randint(1, len(secret) - 1)
            pieces.append(secret[:cut] if rng.random() < 0.5 else secret[cut:])  # a part only: stays
        elif roll < 0.72:
            quote = rng.choice(("", "'", '"', '\\"'))
            value = rng.choice((rng.choice(forms), "FC id:sig", "v4lue", "CAIS-x", "b'xyz'"))
            pieces.append(f"{quote}{rng.choice(KEY_NAMES)}{quote}{rng.choice(SEPARATORS)}{value}")
        elif roll < 0.80:
            pieces.append(
                rng.choice(
                    (
                        "13800138000",
                        "+86 13912345678",
                        "8613800138000",
                        "+86-15012345678",
                        "138001380001",
                        "1380013800",
                        "１３８００１３８０００",
                        "x13800138000",
                        "13800138000y",
                    )
                )
            )
        elif roll < 0.86:
            pieces.append(
                rng.choice(("mysql+pymysql://flow:pa55w0rd@rds:3306/l", "https://a.b/c", "x://u:p@h", "://@"))
            )
        elif roll < 0.90:
            pieces.append(rng.choice(("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Bearer short", "bearer abcdefghij")))
        else:
            pieces.append(rng.choice(("\n", " ", ", ", "; ", "&", "{", "}", "'", '"', "%", "\\")))
    if rng.random() < 0.03:
        pieces.insert(rng.randrange(len(pieces) + 1), "filler " * 700)  # longer than the itemgetter's reach
    return "".join(pieces)


@pytest.mark.parametrize("tiers", ["short and long", "long only", "short only", "none"])
def test_redact_matches_the_plain_reference_on_random_texts(tiers: str):
    rng = random.Random(f"{SEED}-{tiers}")
    secrets = make_secrets(rng)
    if tiers == "long only":
        secrets = [s for s in secrets if len(s) >= 24]
    elif tiers == "short only":
        secrets = [s for s in secrets if len(s) < 24]
    redactor = SecretRedactor()
    if tiers != "none":
        redactor.register(*secrets)
    forms = sorted({form for secret in secrets for form in logs._forms(secret)}) if tiers != "none" else []
    pool = forms or ["not-registered-value"]
    checked = 0
    for _ in range(1500):
        text = random_text(rng, secrets or ["abcdefgh"], pool)
        expected = reference_redact(text, forms)
        assert redactor.redact(text) == expected, text
        assert redactor.redact(text) == expected, text  # again: from the cache when short
        for form in forms:
            if "*" not in form:
                assert form not in expected
        checked += bool(forms) and any(form in text for form in forms)
    assert checked > 300 or tiers == "none"  # most texts held a secret


def test_every_form_is_found_at_every_offset_of_a_text():
    """The sampled slices every _STRIDE characters: a long form is found wherever it starts."""
    rng = random.Random(SEED)
    secret = sts_token(rng)
    redactor = SecretRedactor()
    redactor.register(secret, "short-secret-1")
    for form in [*logs._forms(secret), "short-secret-1"]:
        for offset in range(2 * logs._STRIDE + 1):
            for after in ("", "x", "y" * (logs._GRAM + 3)):
                text = "z" * offset + form + after
                assert redactor.redact(text) == "z" * offset + logs.REDACTED + after


def test_overlapping_secrets_are_hidden_whole():
    redactor = SecretRedactor()
    first, second = "AAAAAAAAAAAABBBBBBBBBBBBBBBB", "BBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC"  # share 16 characters
    redactor.register(first, second, "short1", "t1xyz9")
    assert redactor.redact(f"<{first[:12]}{second}>") == "<***>"
    assert redactor.redact("<short1xyz9>") == "<***>"  # "short1" and "t1xyz9" overlap
    assert redactor.redact(f"{first}{first}") == "******"  # adjacent: one mark each


def test_a_text_redacted_before_a_secret_was_registered_is_redacted_again():
    redactor = SecretRedactor()
    text = "connect with late-registered-secret-42 now"
    assert redactor.redact(text) == text  # remembered as clean
    redactor.register("late-registered-secret-42")
    assert redactor.redact(text) == "connect with *** now"
    redactor.forget_all()
    assert redactor.redact(text) == text


def test_the_pre_checks_know_every_character_re_ignorecase_folds_to_an_ascii_letter():
    letter = re.compile("[a-z]", re.IGNORECASE)
    folded_by_re = {chr(cp) for cp in range(128, sys.maxunicode + 1) if letter.fullmatch(chr(cp))}
    assert folded_by_re == {char for char, _ in logs._FOLDS}
    for char, ascii_letter in logs._FOLDS:
        assert re.fullmatch(ascii_letter, char, re.IGNORECASE)
    # the punctuation that must follow a key word matches only itself
    punctuation = re.compile(r"[ \t:=\"'\\%_-]", re.IGNORECASE)
    assert not [cp for cp in range(128, sys.maxunicode + 1) if punctuation.fullmatch(chr(cp))]


def test_sensitive_fields_are_found_whatever_the_case_and_folding():
    for name in KEY_NAMES:
        if name in ("tokens", "my_token_id"):
            continue
        for shape in (f"{name}: v4lue-1", f"'{name}': 'v4lue-1'", f'"{name}":"v4lue-1"', f"{name}%3Dv4lue-1%26"):
            assert "v4lue-1" not in logs.redactor.redact(f"x {shape} y"), shape


# --- through every handler -------------------------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """A few fresh secrets registered with the module's redactor (few: the registry is bounded and shared)."""
    rng = random.Random(SEED)
    unique = uuid.uuid4().hex[:8]
    secrets = [
        f'whsec_{unique}+/="{random_secret(rng, 20)}',
        f"ak{unique}{random_secret(rng, 4)}",  # a short one
        sts_token(rng),
        f"pw {unique} é秘密 {random_secret(rng, 10)}",
        f"q'\"\\{unique}é秘\x01",  # both quotes, a backslash, non-ASCII, a control character: repr() escapes
    ]
    register_secret(*secrets)
    yield secrets


@pytest.fixture
def our_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)  # type: ignore[attr-defined]
    logger.thread_safe_clear_keys()
    yield buffer
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    logger.thread_safe_clear_keys()


class WithExtras(logging.Formatter):
    """Prints a record whole: message, traceback, stack, and its extras (as a handler that shows everything)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in logs._STANDARD_ATTRS}
        return f"{super().format(record)} {json.dumps(extras, default=str, ensure_ascii=False)}"


def test_every_registered_secret_in_every_form_is_hidden_from_every_handler(
    registered: list[str],
    our_lines: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    """Extras go through our logger only: a foreign logger's extras are cleaned by the filter on the handlers that
    exist when install_log_safety runs, which a handler added during a test is not."""
    rng = random.Random(SEED + 1)
    forms = sorted({form for secret in registered for form in logs._forms(secret)})
    root_later = io.StringIO()
    root_handler = logging.StreamHandler(root_later)  # added after shared.logs was imported, as FC's may be
    root_handler.setFormatter(WithExtras("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(root_handler)
    sdk_buffer = io.StringIO()
    sdk_logger = logging.getLogger(f"sdk.created.later.{uuid.uuid4().hex}")  # with its own handler, not propagating
    sdk_handler = logging.StreamHandler(sdk_buffer)
    sdk_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    sdk_logger.addHandler(sdk_handler)
    sdk_logger.propagate = False
    foreign = (logging.getLogger("some.library"), logging.getLogger(), sdk_logger)
    caplog.set_level(logging.DEBUG)
    try:
        for n in range(360):
            form = forms[n % len(forms)]
            text = random_text(rng, registered, [form])
            around = f"{text[:40]}{form}{text[40:80]}"
            target = logger if n % 2 else rng.choice(foreign)
            how = rng.randrange(7)
            if how == 0:
                target.warning(around)
            elif how == 1:
                target.warning("value %s and %r", around, {"nested": [around, (form,)]})
            elif how == 2:
                target.error("Request headers: {}".format({"x-header": around, "other": form}))  # as fc2 does
            elif how == 3:
                try:
                    raise ValueError(around)
                except ValueError:
                    target.exception("failed with %s", form)
            elif how == 4:
                target.warning("stack %s", form, stack_info=True)
            elif how == 5:
                target.warning("broken %d format", around)  # a %-format that fails
            elif target is logger:
                target.warning("extras", extra={"detail": around, "deep": {"list": [around, {"k": form}]}})
            else:
                target.warning(b"bytes message " + around.encode())  # type: ignore[arg-type]
    finally:
        logging.getLogger().removeHandler(root_handler)
    captured = capsys.readouterr()
    messages = "\n".join(record.getMessage() for record in caplog.records)
    extras = [WithExtras().format(record) for record in caplog.records]
    outputs = {
        "ours": our_lines.getvalue(),
        "root handler added later": root_later.getvalue(),
        "logger created later": sdk_buffer.getvalue(),
        "caplog": "\n".join([caplog.text, messages, *extras]),
        "stdout/stderr": captured.out + captured.err,
    }
    assert all(outputs[name] for name in ("ours", "root handler added later", "logger created later", "caplog"))
    for name, output in outputs.items():
        leaked = [form for form in forms if form in output]
        assert not leaked, f"{name} printed {leaked[:3]}"


def test_secrets_written_by_repr_or_as_bytes_are_hidden(registered: list[str]):
    buffer = io.StringIO()
    sdk_logger = logging.getLogger(f"sdk.repr.{uuid.uuid4().hex}")
    sdk_logger.addHandler(logging.StreamHandler(buffer))
    sdk_logger.propagate = False
    for secret in registered:
        sdk_logger.warning("args %r", (secret,))
        sdk_logger.warning("headers {}".format({"x-header": secret}))
        sdk_logger.warning("body %s", secret.encode())
    printed = buffer.getvalue()
    assert printed.count("\n") == 3 * len(registered)
    for secret in registered:
        for shown in (secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]):
            assert shown not in printed


def test_numbers_shaped_like_phones_are_masked_and_the_line_stays_json(our_lines: io.StringIO):
    logger.info("counted", extra={"count": 13800138000, "with_code": 8613800138000, "small": 1380013800, "f": 1.5})
    (line,) = [json.loads(text) for text in our_lines.getvalue().splitlines()]
    assert (line["count"], line["with_code"]) == ("138****8000", "86138****8000")
    assert (line["small"], line["f"]) == (1380013800, 1.5)


def test_a_blanked_value_before_an_escaped_quote_keeps_the_line_json(our_lines: io.StringIO):
    logger.info("x", extra={"detail": 'token: x"y', "path": "password=abc\\", "pair": 'a="1" secret="2"'})
    (line,) = [json.loads(text) for text in our_lines.getvalue().splitlines()]
    assert (line["detail"], line["path"]) == ('token: ***"y', "password=***\\")
    assert line["pair"] == 'a="1" secret="***"'


def test_an_extra_replaced_after_the_logger_cleaned_the_record_is_cleaned_again(registered: list[str]):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    handler.addFilter(logs.redactor)
    sneaky = logging.getLogger(f"sneaky.{uuid.uuid4().hex}")
    sneaky.propagate = False
    sneaky.addFilter(logs.redactor)

    def replace(record: logging.LogRecord) -> bool:  # a filter of someone else's, after ours
        record.detail = f"now {registered[0]}"
        return True

    sneaky.addFilter(replace)
    sneaky.addHandler(handler)
    sneaky.warning("first", extra={"detail": "clean"})
    assert registered[0] not in buffer.getvalue() and "now ***" in buffer.getvalue()


def test_field_names_cache_stays_right_when_it_is_full(our_lines: io.StringIO):
    for n in range(logs._KIND_CACHE_SIZE + 10):
        logs._kind_of(f"field_{n}")
    logger.info("after", extra={"password": "hunter2-x", "note": "fine", "mobile": "13800138000"})
    (line,) = [json.loads(text) for text in our_lines.getvalue().splitlines()]
    assert (line["password"], line["note"], line["mobile"]) == ("***", "fine", "138****8000")


# --- threads ----------------------------------------------------------------------------------------------------


def test_registering_while_threads_log_is_safe_and_immediate(our_lines: io.StringIO):
    """Loggers log values as soon as their register_secret returned, while more are being registered."""
    registered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    other = io.StringIO()
    foreign = logging.getLogger(f"race.{uuid.uuid4().hex}")
    foreign.addHandler(logging.StreamHandler(other))
    foreign.propagate = False

    def log_forever(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                with lock:
                    known = list(registered)
                if not known:
                    continue
                value = rng.choice(known)
                form = rng.choice(logs._forms(value))
                logger.info("line", extra={"detail": f"x {form} y", "n": rng.random()})
                foreign.warning("seen %s here", form)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=log_forever, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        for n in range(40):
            value = f"race-{uuid.uuid4().hex}-{n}+/"
            register_secret(value)
            with lock:
                registered.append(value)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors
    printed = our_lines.getvalue() + other.getvalue()
    assert printed.count("\n") > 40
    leaked = [value for value in registered for form in logs._forms(value) if form in printed]
    assert not leaked
