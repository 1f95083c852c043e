"""The `hilo` command: `hilo dev` runs the local twin of template.yaml; `hilo clock` moves its clock; `hilo demo`
plays a customer's story against it."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``3d``, ``1d12h``, ``90m``, ``45s`` or a bare number of seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3d, 1d12h, 90m or 45s")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _dev(args: argparse.Namespace) -> int:
    from hilo.local.stack import LocalStack, StackConfig
    from hilo.local.template import TemplateError

    config = StackConfig(
        template_path=Path(args.template),
        stack_name=args.stack_name,
        host=args.host,
        port=args.port,
        aws_port=args.aws_port,
        parameters=dict(args.parameter or []),
        concurrency=args.concurrency,
        pretty_logs=not args.json_logs,
        fake_providers=not args.no_fake_providers,
    )
    stack = LocalStack(config)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack.start()
    except (TemplateError, OSError) as error:
        print(f"hilo dev: {error}", file=sys.stderr)
        stack.stop()
        return 2
    print(stack.banner(), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    print("\nStopping the local stack...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return 0


def _clock(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/_dev/clock"
    data = None
    if args.action == "advance":
        if args.duration is None:
            print("hilo clock advance: give a duration, e.g. 3d", file=sys.stderr)
            return 2
        data = json.dumps({"advance_seconds": args.duration}).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310 - local twin URL
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local twin URL
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        print(f"hilo clock: {error.code} {error.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"hilo clock: is `hilo dev` running at {args.url}? ({error.reason})", file=sys.stderr)
        return 1
    print(f"local time {body['now']} (offset {body['offset_seconds']:.0f} s)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hilo.demo import DemoError, Target, broken_tv, read_config

    try:
        target = Target(args.url.rstrip("/"), read_config(args.aws_url, args.stack_name))
        broken_tv(target, sys.stdout)
    except DemoError as error:
        print(f"hilo demo: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hilo", description="Hilo developer tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run template.yaml locally on an embedded AWS (moto), no Docker")
    dev.add_argument("--port", type=int, default=3000, help="HTTP API port (default 3000)")
    dev.add_argument("--aws-port", type=int, default=4566, help="moto server port (default 4566)")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--template", default="template.yaml", help="SAM template (default template.yaml)")
    dev.add_argument("--stack-name", default="hilo", help="prefix of local resource names (default hilo)")
    dev.add_argument("--parameter", action="append", type=_parameter, metavar="NAME=VALUE", help="template parameter")
    dev.add_argument("--concurrency", type=int, default=2, help="warm workers per function (default 2)")
    dev.add_argument("--json-logs", action="store_true", help="print functions' logs as raw JSON lines")
    dev.add_argument(
        "--no-fake-providers",
        action="store_true",
        help="no fake Twilio/Meta/Telegram server (it is skipped anyway when a HILO_*_API_URL is set)",
    )
    dev.set_defaults(run=_dev)

    clock = commands.add_parser("clock", help="read or move the local stack's clock (local mode only)")
    clock.add_argument("action", choices=["show", "advance"])
    clock.add_argument("duration", nargs="?", type=parse_duration, help="e.g. 3d, 1d12h, 90m, 45s")
    clock.add_argument("--url", default="http://127.0.0.1:3000", help="the running `hilo dev` (default port 3000)")
    clock.set_defaults(run=_clock)

    demo = commands.add_parser("demo", help="play a story against a running `hilo dev` and print the unified thread")
    demo.add_argument("story", choices=["broken-tv"], help="broken-tv: a call, the IVR, then WhatsApp (story 1)")
    demo.add_argument("--url", default="http://127.0.0.1:3000", help="the running `hilo dev` (default port 3000)")
    demo.add_argument("--aws-url", default="http://127.0.0.1:4566", help="its embedded AWS (default port 4566)")
    demo.add_argument("--stack-name", default="hilo", help="its --stack-name (default hilo)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
