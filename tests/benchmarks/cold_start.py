"""Benchmark (not a test): each function's cold start and warm request time against Lambda's floor.

The floor is a bare handler that imports boto3, creates one SQS client and sends one message. Each figure is the
median of several runs on this machine. Cold start is what the first caller waits for, in a fresh interpreter with
the function's own environment from template.yaml: imports, module-level objects, and the first request (which
builds the clients and reads the settings); for the floor, import + client + first send. Warm time is measured
in-process on a realistic event. Everything AWS is the embedded moto. Bytecode is compiled first, as it is in
Lambda's layers (``shared/Makefile``, pip), so the figures do not include compiling sources.

Run: ``make bench``. Paste the table into docs/performance.md with the date and the machine.
"""

from __future__ import annotations

import compileall
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hilo.local.apigw import HttpRequest, build_event
from hilo.local.stack import ACCOUNT_ID, LocalStack, StackConfig, free_port
from tests.benchmarks.samples import SECRETS, sample_request

ROOT = Path(__file__).resolve().parents[2]
COLD_RUNS = 15
WARM_CALLS = 200

_PROBE = r"""
import json, sys, time
event = json.loads(sys.argv[1])
{prepare}
started = time.perf_counter()
{setup}
{call}
init = time.perf_counter() - started
timings = []
for _ in range({calls}):
    t = time.perf_counter()
    {call}
    timings.append(time.perf_counter() - t)
timings.sort()
print(json.dumps({{"init": init, "warm": timings[len(timings) // 2]}}))
"""


_CONTEXT = "from hilo.local.worker import LambdaContext\ncontext = LambdaContext('bench', 2**62)"


def _probe(setup: str, call: str, env: dict[str, str], cwd: Path, event: object, calls: int) -> dict[str, float]:
    code = _PROBE.format(setup=setup, call=call, calls=calls, prepare=_CONTEXT if "context" in call else "")
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(event)], env=env, cwd=cwd, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median(setup: str, call: str, env: dict[str, str], cwd: Path, event: object) -> tuple[float, float]:
    cold = [_probe(setup, call, env, cwd, event, calls=1)["init"] for _ in range(COLD_RUNS)]
    warm = _probe(setup, call, env, cwd, event, calls=WARM_CALLS)["warm"]
    return statistics.median(cold), warm


def main() -> None:
    for folder in ("shared", "functions"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    with tempfile.TemporaryDirectory() as state:
        config = StackConfig(
            ROOT / "template.yaml", "bench", port=free_port(), aws_port=free_port(), state_dir=Path(state),
            output=io.StringIO(), pretty_logs=False, environ={**os.environ, **SECRETS},
        )  # fmt: skip
        with LocalStack(config) as stack:
            base_env = stack.worker_environment()
            queue = stack.physical_id("EventsQueue")
            floor = _median(
                "import boto3\nclient = boto3.client('sqs')",
                f"client.send_message(QueueUrl={queue!r}, MessageBody='x')",
                base_env, ROOT, None,
            )  # fmt: skip
            rows = [("floor: import boto3 + SQS client + send", *floor)]
            for logical_id, pool in sorted(stack.pools.items()):
                spec = pool.spec
                routes = sorted(k for k, fn in stack.routes.items() if fn == logical_id)
                if not routes:
                    continue
                # The function's realistic (signed) request when there is one, else its first route.
                route = next((k for k in routes if sample_request(k, stack.api_url)), routes[0])
                request = sample_request(route, stack.api_url)
                if request is None:
                    method, _, path = route.partition(" ") if route != "$default" else ("GET", "", "/unknown/path")
                    path = path.replace("{id}", "ses_1").replace("{proxy+}", "x")
                    request = HttpRequest(method, path, [("content-type", "application/json")], b"{}")
                event = build_event(request, route, {}, stack.physical_id("HttpApi"), ACCOUNT_ID)
                env = {**base_env, **spec.environment, **SECRETS, "PYTHONPATH": str(spec.code_dir)}
                rows.append(
                    (
                        f"{logical_id} ({route})",
                        *_median("import handler", "handler.lambda_handler(event, context)", env, spec.code_dir, event),
                    )
                )
    floor_cold, floor_warm = rows[0][1], rows[0][2]
    print("| function | cold start (s) | × floor | warm request (ms) | × floor |\n|---|---|---|---|---|")
    for name, cold, warm in rows:
        print(f"| {name} | {cold:.3f} | {cold / floor_cold:.2f} | {warm * 1000:.2f} | {warm / floor_warm:.2f} |")
    print(
        f"\n{COLD_RUNS} cold runs (median), {WARM_CALLS} warm calls (median); "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
