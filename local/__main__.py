"""Command line for the local stack.

python -m local up|down [--state-dir .local]      start / stop the whole stack in the background
python -m local stack [--state-dir .local]         run the whole stack in the foreground
python -m local mns --port 0 [--data-dir DIR]      run only the MNS emulator in the foreground
python -m local publish --out-id X --phone P --result 3|4 [--err-code C --err-msg M] [--raw BODY]
python -m local stats [mns|alicom|fc|customer-mns]
python -m local faults mns|alicom|fc|customer-mns ('<json>' | --clear)
python -m local invoke --function NAME --event FILE   (see local/fc/runner.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ADMIN_URLS = {
    "mns": "ALICOM_MNS_ADMIN_URL",
    "alicom": "ALICOM_API_ADMIN_URL",
    "fc": "FC_ADMIN_URL",
    "customer-mns": "MNS_ADMIN_URL",
}


def _json_argument(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", type=Path, default=Path(os.environ.get("LOCAL_DIR", ".local")))

    commands.add_parser("up", parents=[state], help="start the local stack in the background")
    commands.add_parser("down", parents=[state], help="stop the background stack")
    commands.add_parser("stack", parents=[state], help="run the local stack in the foreground")

    mns = commands.add_parser("mns", help="run only the MNS queue emulator in the foreground")
    mns.add_argument("--host", default="127.0.0.1")
    mns.add_argument("--port", type=int, default=0, help="0 picks a free port")
    mns.add_argument("--data-dir", help="keep queues and messages here across restarts (default: memory only)")
    mns.add_argument("--faults", type=_json_argument, default=None, help="initial fault configuration, JSON")
    mns.add_argument("--owner-id", default="local-owner")
    mns.add_argument("--owner-secret", default="local-owner-secret")
    mns.add_argument("--publisher-id", default="alicom-publisher")
    mns.add_argument("--publisher-secret", default="alicom-publisher-secret")
    mns.add_argument("--max-clock-skew", type=float, default=900.0, help="seconds; 0 disables the Date check")

    publish = commands.add_parser("publish", parents=[state], help="publish a FlowReport as Alicom would")
    publish.add_argument("--out-id")
    publish.add_argument("--phone")
    publish.add_argument("--result", choices=["3", "4"])
    publish.add_argument("--err-code", default="")
    publish.add_argument("--err-msg", default="")
    publish.add_argument("--raw", help="publish this exact body text instead of a well-formed report")

    stats = commands.add_parser("stats", parents=[state], help="counters and queue depths")
    stats.add_argument("part", nargs="?", choices=sorted(ADMIN_URLS), help="one emulator (default: all)")

    faults = commands.add_parser("faults", parents=[state], help="show, set or clear injected faults")
    faults.add_argument("part", choices=sorted(ADMIN_URLS))
    faults.add_argument("config", nargs="?", type=_json_argument, help="fault configuration, JSON")
    faults.add_argument("--clear", action="store_true")
    return parser


def _admin(url: str, method: str = "GET", payload: object = None) -> object:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise RuntimeError(f"{method} {url} answered {exc.code}: {detail}") from None


def _run_mns(args: argparse.Namespace) -> int:
    from local.mns import MnsEmulator
    from local.serve import serve_until_signalled

    emulator = MnsEmulator(
        args.host,
        args.port,
        owner=(args.owner_id, args.owner_secret),
        publisher=(args.publisher_id, args.publisher_secret),
        data_dir=args.data_dir,
        faults=args.faults,
        max_clock_skew=args.max_clock_skew or None,
    )
    return serve_until_signalled(emulator, {"endpoint": emulator.endpoint, "admin_url": emulator.admin_url})


def _run(args: argparse.Namespace) -> int:
    from local import stack

    if args.command == "up":
        return stack.up(args.state_dir)
    if args.command == "down":
        return stack.down(args.state_dir)
    if args.command == "stack":
        return stack.run_foreground(args.state_dir)
    if args.command == "mns":
        return _run_mns(args)
    env = stack.read_env(args.state_dir)
    if args.command == "publish":
        if args.raw is not None:
            report: dict = {"raw_body": args.raw}
        elif args.out_id and args.phone and args.result:
            report = {
                "out_id": args.out_id,
                "phone": args.phone,
                "result": args.result,
                "err_code": args.err_code,
                "err_msg": args.err_msg,
            }
        else:
            raise RuntimeError("publish needs --out-id, --phone and --result, or --raw")
        print(json.dumps(_admin(env[ADMIN_URLS["alicom"]] + "/reports", "POST", report), indent=1))
    elif args.command == "stats":
        parts = [args.part] if args.part else sorted(ADMIN_URLS)
        print(json.dumps({part: _admin(env[ADMIN_URLS[part]] + "/stats") for part in parts}, indent=1))
    elif args.command == "faults":
        url = env[ADMIN_URLS[args.part]] + "/faults"
        if args.clear:
            answer = _admin(url, "DELETE")
        elif args.config is not None:
            answer = _admin(url, "PUT", args.config)
        else:
            answer = _admin(url)
        print(json.dumps(answer, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["invoke"]:
        from local.fc.runner import main as invoke

        return invoke(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"local {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
