"""Run one handler locally with an FC-shaped context: `make invoke FN=<name> EVENT=<file>`.

    python -m local.fc.runner --function processor --event events/report.json
    python -m local.fc.runner --function drainer --timer every-minute            # payload from template.yml
    python -m local.fc.runner --handler handlers.echo --code-uri tests/fixtures/fc --event - < event.json

FN is looked up in template.yml (repo root) when it exists, else taken as functions/<FN>/index.handler. The
handler runs in this process: the code directory goes first on sys.path (then the current directory, so
functions can import shared/), FC_* and ALIBABA_CLOUD_* variables are set, the template's variables are
defaults (variables already set in the shell win, so a sourced .local/stack.env points the function at the
local stack), the initializer runs once, the timeout is enforced with SIGALRM. Prints the return value on
stdout (the function's own prints go to stderr); exit status 0, or 1 with a one-line error on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from local.fc.context import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Credentials, FcContext, build_context, new_request_id
from local.fc.functions import FunctionSpec, TemplateError, load_template
from local.fc.instance import reserved_environment
from local.fc.loader import encode_result, load_callable, prepare_path

DEFAULT_TEMPLATE = "template.yml"
LOCAL_SERVICE = "local"


class InvokeError(Exception):
    pass


class FunctionTimeout(Exception):
    pass


def timer_event(trigger_name: str, payload: str, now: datetime | None = None) -> bytes:
    """A timer trigger's event (reference/fc.md §5); `payload` stays a string, as FC delivers it."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    event = {"triggerTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "triggerName": trigger_name, "payload": payload}
    return json.dumps(event).encode("utf-8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.fc.runner", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("name", nargs="?", help="the function (same as --function)")
    parser.add_argument("--function", "-f", dest="function", help="function name (template.yml or functions/<FN>)")
    parser.add_argument("--template", help=f"Serverless Devs template (default: {DEFAULT_TEMPLATE} if it exists)")
    parser.add_argument("--handler", help="module.func, overrides the template / functions/<FN>/index.handler")
    parser.add_argument("--code-uri", help="code directory, overrides the template / functions/<FN>")
    parser.add_argument("--initializer", help="module.func called once with the context before the handler")
    parser.add_argument("--python-path", action="append", default=[], help="extra sys.path entry (repeatable)")
    parser.add_argument("--timeout", type=float, help="seconds; 0 disables (default: the function's timeout)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--event", "-e", help="event file, read as bytes; '-' reads stdin")
    source.add_argument("--event-text", help="the event itself, as UTF-8 text")
    source.add_argument(
        "--timer",
        nargs="+",
        metavar="NAME [PAYLOAD]",
        help="a timer trigger event; PAYLOAD defaults to the template trigger's payload",
    )
    parser.add_argument("--traceback", action="store_true", help="print the full traceback on failure")
    return parser


def resolve_spec(args: argparse.Namespace, cwd: Path) -> FunctionSpec:
    name = args.function or args.name
    spec: FunctionSpec | None = None
    template = Path(args.template) if args.template else cwd / DEFAULT_TEMPLATE
    if name and (args.template or template.exists()):
        try:
            specs = load_template(template)
        except TemplateError as exc:
            raise InvokeError(str(exc)) from None
        found = [s for s in specs if s.name == name]
        if not found and not (args.handler and args.code_uri):
            known = ", ".join(sorted(s.name for s in specs)) or "none"
            raise InvokeError(f"function {name!r} is not in {template} (functions there: {known})")
        spec = found[0] if found else None
    if spec is None:
        if not name and not args.handler:
            raise InvokeError("name a function (--function FN) or a handler (--handler module.func)")
        handler = args.handler or "index.handler"
        code_uri = Path(args.code_uri) if args.code_uri else cwd / "functions" / str(name)
        spec = FunctionSpec(
            service=LOCAL_SERVICE,
            name=name or handler.rpartition(".")[2],
            handler=handler,
            code_uri=code_uri.resolve(),
        )
    overrides: dict = {}
    extra = [Path(p).resolve() for p in args.python_path]
    if cwd not in spec.python_path and spec.code_uri != cwd:
        extra.append(cwd)  # functions import shared/ from the repo root
    if args.handler:
        overrides["handler"] = args.handler
    if args.code_uri:
        overrides["code_uri"] = Path(args.code_uri).resolve()
    if args.initializer:
        overrides["initializer"] = args.initializer
    if extra:
        overrides["python_path"] = (*spec.python_path, *extra)
    if args.timeout is not None:
        overrides["timeout"] = args.timeout if args.timeout > 0 else 86400.0
    if overrides:
        spec = replace(spec, **overrides)
    if not spec.code_uri.is_dir():
        raise InvokeError(f"code directory {spec.code_uri} does not exist")
    return spec


def read_event(args: argparse.Namespace, spec: FunctionSpec) -> bytes:
    if args.timer:
        if len(args.timer) > 2:
            raise InvokeError("--timer takes NAME and an optional PAYLOAD")
        name = args.timer[0]
        if len(args.timer) == 2:
            payload = args.timer[1]
        else:
            trigger = spec.trigger(name)
            if trigger is None:
                raise InvokeError(f"function {spec.name!r} has no timer trigger {name!r}; give the PAYLOAD")
            payload = trigger.payload
        return timer_event(name, payload)
    if args.event_text is not None:
        return args.event_text.encode("utf-8")
    if args.event in (None, ""):
        return b""
    if args.event == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.event).read_bytes()
    except OSError as exc:
        raise InvokeError(f"cannot read the event file: {exc.strerror}: {args.event}") from None


def environment_credentials() -> Credentials:
    return Credentials(
        os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID") or "local-ak",
        os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET") or "local-sk",
        os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or "",
    )


def prepare_environment(spec: FunctionSpec, credentials: Credentials, region: str, account_id: str) -> None:
    for key, value in spec.environment.items():
        os.environ.setdefault(key, value)
    reserved = reserved_environment(
        spec, credentials, region=region, account_id=account_id, instance_id="local-" + new_request_id()[:8]
    )
    os.environ.update(reserved)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    usable = seconds > 0 and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise FunctionTimeout(f"Function timed out after {seconds:g} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def invoke(spec: FunctionSpec, event: bytes, credentials: Credentials, region: str, account_id: str) -> bytes:
    """Runs the handler in this process, as one fresh FC instance would; returns the response bytes."""
    prepare_environment(spec, credentials, region, account_id)
    prepare_path(spec.code_uri, spec.python_path)
    os.chdir(spec.code_uri)

    def context() -> FcContext:
        return build_context(spec, credentials, region=region, account_id=account_id)

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the return value
        with deadline(spec.init_timeout):
            handler = load_callable(spec.code_uri, spec.handler)
            if spec.initializer:
                load_callable(spec.code_uri, spec.initializer)(context())
        with deadline(spec.timeout):
            return encode_result(handler(event, context()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cwd = Path.cwd()
    try:
        spec = resolve_spec(args, cwd)
        event = read_event(args, spec)
    except (InvokeError, ValueError) as exc:
        print(f"invoke: {exc}", file=sys.stderr)
        return 1
    region = os.environ.get("FC_REGION") or spec.region or DEFAULT_REGION
    account_id = os.environ.get("FC_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
    try:
        body = invoke(spec, event, environment_credentials(), region, account_id)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            print("invoke: interrupted", file=sys.stderr)
            return 130
        if args.traceback:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or "(no message)"
        print(f"invoke: {spec.name} ({spec.handler}) failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.write(body)
    if not body.endswith(b"\n"):
        out.write(b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
