"""The cost of one log line with the secret redactor, against the same logger without it (the baseline).

    .venv/bin/python -m bench.log_line [--lines 3000] [--repeat 5] [--rounds 3] [--before REV|none] [--warmup 300]

Three variants, each in a fresh child process (the redactor installs a process-wide log-record factory), run in
turn `rounds` times; each figure is the best per-line CPU time (what FC bills) over the rounds and `repeat` timed
passes of `lines` lines (fewer if a pass would take over 0.3 s; after a warm-up), written to os.devnull:

  baseline  Powertools' Logger with its own JSON formatter (utc, RFC 3339) and nothing of shared/logs.py: no
            factory, no filter, no redaction. Root has a plain handler, as FC's runtime adds one.
  before    shared/logs.py as of REV (default: the last commit with the regex-alternation redactor), read with
            `git show` and loaded as a module of its own.
  after     shared/logs.py as it is.

Lines, with the invocation keys bound (function keys, request id as correlation id):

  summary   the drain's "drain finished" line (DrainSummary.as_dict(): 15 counters, seconds, stopped_by);
  receipt   a receipt-sized line: pipeline's "receipt not applied" fields, message_id bound, and the FlowReport
            itself (raw phone number, Chinese err_msg);
  fc2       a foreign record: fc2's error line through the ROOT logger (request headers with the security token
            of the last registered credential and a signature), formatted by root's plain handler;
  sdk       a foreign record without any secret: an SDK's INFO line with %-arguments, through root.

each with 0, 50 and 256 registered STS credentials (AccessKey secret: 44 characters; security token: "CAIS" and
600 characters of base64, so 4 registered forms per credential, 1024 = the registry's limit at 256). The time to
register one more credential at 256 is reported too. Target: our lines (summary, receipt) at most 2.5x the
baseline with any number of credentials, i.e. 0.1 ms of CPU on this project's 2-core CI machine, where the baseline
line takes about 0.04 ms; foreign lines are reported. Each variant also logs one
line of each case into a buffer, and a token or raw phone number found there by the `after` variant is reported
as a leak (and fails the target). Prints the figures, then one JSON line; exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.entry import run_benchmark
from bench.results import Check, write_result

NAME = "log_line"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BEFORE_REV = "833467592e2d017bb6447d0026f6954ab57d4752"
TARGET_RATIO = 2.5  # 0.1 ms per line where the baseline line is 0.04 ms
COUNTS = (0, 50, 256)
OURS = ("summary", "receipt")
FOREIGN = ("fc2", "sdk")
VARIANTS = ("baseline", "before", "after")
WARM_UP = 300
PASS_SECONDS = 0.3  # at most, per timed pass

REQUEST_ID = "c0ffee00-1234-4bcd-9876-0123456789ab"
KEYS = {
    "cold_start": False,
    "function_name": "drainer",
    "function_memory_size": 512,
    "function_arn": "acs:fc:cn-hangzhou:1234567890123456:services/flow-receipts/functions/drainer",
    "function_request_id": REQUEST_ID,
    "correlation_id": REQUEST_ID,
}
SUMMARY = {
    "received": 48,
    "applied": 45,
    "duplicates": 2,
    "conflicts": 0,
    "orphans": 0,
    "accepted": 0,
    "dead_lettered": 1,
    "deleted": 48,
    "delete_failed": 0,
    "left_for_retry": 0,
    "events": 45,
    "delivered": 45,
    "undelivered": 0,
    "seconds": 3.412,
    "stopped_by": ["empty"],
}
MESSAGE_ID = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
RECEIPT = {
    "message_id": MESSAGE_ID,
    "out_id": "order-20261201-000123",
    "phone": "138****8000",  # masked by the caller, as pipeline.py does
    "outcome": "duplicate",
    "status": "FAILED",
    "dequeue_count": 2,
    "report": {
        "phone": "13800138000",
        "out_id": "order-20261201-000123",
        "result": "4",
        "err_code": "UNKNOW",
        "err_msg": "充值失败,请稍后重试",
    },
}
FC2_FORMAT = "Server error: {}. Message: {}. Method: {}. URL: {}. Request headers: {}. Response headers: {}"


def credentials(count: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return [
        ("".join(rng.choices(alphabet, k=44)), "CAIS" + base64.b64encode(rng.randbytes(450)).decode())
        for _ in range(count)
    ]


# --- in the child -------------------------------------------------------------------------------------------------


def _load(variant: str, source: str | None) -> ModuleType | None:
    if variant == "after":
        import shared.logs

        return shared.logs
    if variant == "before":
        assert source is not None
        spec = importlib.util.spec_from_file_location("_flow_receipts_logs_before", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return None


def _child(variant: str, source: str | None, lines: int, repeat: int, warmup: int = WARM_UP) -> dict[str, Any]:
    sink = open(os.devnull, "w")  # noqa: SIM115 - the process's lifetime
    root = logging.getLogger()
    runtime_handler = logging.StreamHandler(sink)  # FC's runtime handler, there before the code is imported
    runtime_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(runtime_handler)
    root.setLevel(logging.INFO)

    module = _load(variant, source)
    if module is None:
        from aws_lambda_powertools.logging import Logger
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        logger = Logger(service="flow-receipts", logger_formatter=LambdaPowertoolsFormatter(utc=True, use_rfc3339=True))

        def register(*values: str) -> None:
            pass
    else:
        logger = module.logger
        register = module.register_secret
        module.install_log_safety({})
    logger.registered_handler.setStream(sink)
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**KEYS)

    check = io.StringIO()  # one line of each case, to check that the variant redacts what it should
    sdk_logger = logging.getLogger("mns_python_sdk.client")
    state: dict[str, str] = {"token": "CAIS" + "x" * 100}

    def summary() -> None:
        logger.info("drain finished", extra=SUMMARY)

    def receipt() -> None:  # inside message_context(MESSAGE_ID): the key is bound once per message, not per line
        logger.info("receipt not applied", extra=RECEIPT)

    def fc2() -> None:
        headers = {
            "host": "1234567890123456.cn-hangzhou-internal.fc.aliyuncs.com",
            "content-type": "application/json",
            "x-fc-security-token": state["token"],
            "x-fc-invocation-type": "Async",
            "authorization": "FC STS.NUgYrLnoC2yBRT8wVJSDGdrgj:dGhpcyBpcyBhIHNpZ25hdHVyZQ==",
        }
        url = "https://1234567890123456.cn-hangzhou-internal.fc.aliyuncs.com/2016-08-15/services/s/functions/f/invocations"
        logging.error(
            FC2_FORMAT.format(500, {"ErrorCode": "InternalError"}, "POST", url, headers, {"x-fc-request-id": "r"})
        )

    def sdk() -> None:
        sdk_logger.info(
            "ReceiveMessage RequestId:%s QueueName:%s MessageCount:%d", REQUEST_ID, "Alicom-Queue-1-FlowReport", 16
        )

    cases: dict[str, Callable[[], None]] = {"summary": summary, "receipt": receipt, "fc2": fc2, "sdk": sdk}
    figures: dict[str, dict[str, float]] = {name: {} for name in cases}
    leaks: dict[str, list[str]] = {}
    registered = 0
    pool = credentials(max(COUNTS) + 1)
    for count in COUNTS:
        if count > registered:
            register(*(value for credential in pool[registered:count] for value in credential))
            registered = count
            state["token"] = pool[count - 1][1]
        for name, line in cases.items():
            logger.thread_safe_clear_keys()
            logger.thread_safe_append_keys(**KEYS, **({"message_id": MESSAGE_ID} if name == "receipt" else {}))
            started = time.process_time()
            for _ in range(warmup):
                line()
            per_line = (time.process_time() - started) / warmup
            passes = max(10, min(lines, int(PASS_SECONDS / max(per_line, 1e-9))))  # the slow variant: shorter passes
            best = float("inf")
            for _ in range(repeat):
                started = time.process_time()
                for _ in range(passes):
                    line()
                best = min(best, (time.process_time() - started) / passes)
            figures[name][str(count)] = best * 1000
            # one more line, caught, to show that this variant hides the token and the phone number
            logger.registered_handler.setStream(check)
            runtime_handler.setStream(check)
            line()
            logger.registered_handler.setStream(sink)
            runtime_handler.setStream(sink)
            shown = check.getvalue()
            check.seek(0)
            check.truncate()
            found = [what for what, value in (("token", state["token"]), ("phone", "13800138000")) if value in shown]
            if found:
                leaks[f"{name}/{count}"] = found
    started = time.process_time()
    register(*pool[-1])
    registration_ms = (time.process_time() - started) * 1000
    return {"variant": variant, "ms": figures, "register_one_at_256_ms": registration_ms, "shown": leaks}


# --- in the parent ------------------------------------------------------------------------------------------------


def _before_source(rev: str, folder: Path) -> Path | None:
    if rev == "none":
        return None
    try:
        text = subprocess.run(
            ["git", "show", f"{rev}:shared/logs.py"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = folder / "logs_before.py"
    path.write_text(text)
    return path


def _run_child(variant: str, source: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.log_line", "--child", variant, str(args.lines), str(args.repeat)]
    command.append(str(args.warmup))
    if source is not None:
        command.append(str(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}  # compact JSON, level INFO
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {variant} child failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="log-line-bench-") as folder:
        source = _before_source(args.before, Path(folder))
        variants = [v for v in VARIANTS if v != "before" or source is not None]
        best: dict[str, dict[str, dict[str, float]]] = {}
        register_ms: dict[str, float] = {}
        shown: dict[str, dict[str, list[str]]] = {}
        for _ in range(args.rounds):
            for variant in variants:
                result = _run_child(variant, source if variant == "before" else None, args)
                for name, by_count in result["ms"].items():
                    for count, ms in by_count.items():
                        slot = best.setdefault(variant, {}).setdefault(name, {})
                        slot[count] = min(ms, slot.get(count, float("inf")))
                register_ms[variant] = min(result["register_one_at_256_ms"], register_ms.get(variant, float("inf")))
                shown[variant] = result["shown"]

    base = {name: min(best["baseline"][name].values()) for name in best["baseline"]}  # no secrets involved
    print(
        f"{NAME}: CPU ms per line, best of {args.rounds} rounds x {args.repeat} x {args.lines} lines; baseline = "
        f"the same Powertools logger without redaction, same run; before = shared/logs.py at {args.before[:10]}"
    )
    header = f"  {'line':8s} {'STS creds':>9s} {'baseline':>9s} {'before':>9s} {'after':>9s} {'after/base':>10s}"
    print(header + f" {'before/after':>12s}")
    ratios: dict[str, float] = {}
    for name in (*OURS, *FOREIGN):
        for count in map(str, COUNTS):
            after = best["after"][name][count]
            before = best.get("before", {}).get(name, {}).get(count)
            ratio = after / base[name]
            ratios[f"{name}/{count}"] = round(ratio, 3)
            before_text = f"{before:9.4f}" if before is not None else f"{'-':>9s}"
            speedup = f"{before / after:11.1f}x" if before is not None else f"{'-':>12s}"
            print(f"  {name:8s} {count:>9s} {base[name]:9.4f} {before_text} {after:9.4f} {ratio:9.2f}x {speedup}")
    worst = max(ratios[f"{name}/{count}"] for name in OURS for count in COUNTS)
    met = worst <= TARGET_RATIO and not shown.get("after")
    print(
        "  registering one more STS credential with 256 registered: "
        + ", ".join(f"{variant} {ms:.1f} ms" for variant, ms in register_ms.items() if variant != "baseline")
    )
    if shown.get("after"):
        print(f"  LEAK: the redactor let through {shown['after']}")
    print(
        f"  our lines: after at most {worst:.2f}x the baseline (target <= {TARGET_RATIO}x) -> "
        f"{'met' if met else 'MISSED'}"
    )
    detail = {
        "benchmark": NAME,
        "lines": args.lines,
        "repeat": args.repeat,
        "rounds": args.rounds,
        "before_rev": args.before if "before" in best else None,
        "baseline_ms": {name: round(ms, 5) for name, ms in base.items()},
        "before_ms": best.get("before"),
        "after_ms": best["after"],
        "after_over_baseline": ratios,
        "register_one_at_256_ms": {k: round(v, 2) for k, v in register_ms.items() if k != "baseline"},
        "shown_by_after": shown.get("after", {}),
        "target_ratio": TARGET_RATIO,
        "met": met,
    }
    print(json.dumps(detail))
    write_result(NAME, _checks(best["after"], base, bool(shown.get("after"))), detail)
    return 0


def _checks(after: dict[str, dict[str, float]], base: dict[str, float], leaked: bool) -> list[Check]:
    """One row per kind of line: its worst case over the credential counts, against the unredacted logger."""
    checks = []
    for name in (*OURS, *FOREIGN):
        count = max(after[name], key=lambda c: after[name][c])
        ours = name in OURS
        checks.append(
            Check(
                key=f"{name}_line",
                label=f"CPU per {name} line ({count} STS creds, worst)",
                value=after[name][count],
                unit="ms",
                baseline=base[name],
                baseline_label="no redaction",
                target=TARGET_RATIO if ours else None,
                op="<=",
                met=(after[name][count] / base[name] <= TARGET_RATIO and not leaked) if ours else None,
            )
        )
    return checks


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.log_line", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--before", default=BEFORE_REV, help="git revision of shared/logs.py to compare with ('none': skip it)"
    )
    parser.add_argument("--warmup", type=int, default=WARM_UP, help=f"untimed lines per case (default {WARM_UP})")
    args = parser.parse_args(argv)
    if min(args.lines, args.repeat, args.rounds, args.warmup) < 1:
        parser.error("--lines, --repeat, --rounds and --warmup must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        variant, lines, repeat, warmup, *source = argv[1:]
        figures = _child(variant, source[0] if source else None, int(lines), int(repeat), int(warmup))
        print(json.dumps(figures))
        return 0
    return run_benchmark(NAME, _parse, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
