"""Benchmark (not a test): 10,000 workflow waits that end at the same instant, from ``Timers.schedule`` to the queue.

Run: ``.venv/bin/python -m tests.benchmarks.timer_sweep [--count N]``. On moto in this process (``mock_aws``):

1. ``Timers.schedule`` creates N one-time schedules (``at()``, the same instant three days ahead) in the timer group,
   each targeting a standard queue shaped like ``WorkflowQueue`` (the real adapter, through its botocore clients);
2. the local twin's sweep (``hilo.local.timers.OneTimeSchedules.fire_due``), as ``hilo dev`` runs it, is timed with
   nothing due (N pending), then with the clock moved to the instant (all N due), then again (nothing left);
3. the queue is drained and checked: N messages, N distinct bodies, none after the second sweep, no schedule left.

What AWS does at this scale is not measured here (moto has no quotas): EventBridge Scheduler's defaults are printed
underneath, from https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto import mock_aws

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
GROUP = "hilo-TimerGroup"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/hilo-TimerRole"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WAIT = timedelta(days=3)
IDLE_RUNS = 5
#: EventBridge Scheduler's default quotas in its primary Regions (us-east-1, sa-east-1, ...), requests per second.
CREATE_SCHEDULE_TPS = 5_000
INVOCATIONS_TPS = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="schedules due at the same instant (10000)")
    parser.add_argument("--standard", action="store_true", help="a standard queue instead of WorkflowQueue's FIFO")
    arguments = parser.parse_args()
    count, fifo = arguments.count, not arguments.standard
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION})  # fmt: skip
    from hilo.local import moto_fidelity
    from hilo.local.timers import OneTimeSchedules
    from shared.adapters import aws
    from shared.adapters.timers import Timers
    from shared.workflows.engine import timer_key

    moto_fidelity.apply()  # as `hilo dev` runs moto: without it SQS sends slow down as the queue fills
    rows: list[tuple[str, float, str]] = []
    with mock_aws():
        scheduler, sqs = aws.client("scheduler"), aws.client("sqs")
        scheduler.create_schedule_group(Name=GROUP)
        # WorkflowQueue as template.yaml declares it (FIFO, one group per enrolment), or a standard queue
        name, attributes = "hilo-WorkflowQueue", {"VisibilityTimeout": "180"}
        if fifo:
            name += ".fifo"
            attributes.update(FifoQueue="true", ContentBasedDeduplication="true",
                              DeduplicationScope="messageGroup", FifoThroughputLimit="perMessageGroupId")  # fmt: skip
        queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        sqs.create_queue(QueueName="hilo-TimerDlq")
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        timers = Timers(GROUP, ROLE_ARN, f"arn:aws:sqs:{REGION}:{ACCOUNT}:hilo-TimerDlq", clock=lambda: T0)
        log: list[str] = []
        twin = OneTimeSchedules(sqs, REGION, ACCOUNT, log.append)

        # 1. N waits reach their wait step (one schedule each), all ending at T0 + WAIT
        started = time.perf_counter()
        for number in range(count):
            enrolment = f"enr_{number:06d}"
            body = json.dumps({"type": "timer", "enrolment_id": enrolment, "step_id": "espera-3d"})
            group = enrolment if fifo else None
            timers.schedule(timer_key(enrolment, "espera-3d"), T0 + WAIT, queue_arn, body, group_id=group)
        created = time.perf_counter() - started
        rows.append((f"create {count} schedules (Timers.schedule)", created, _per(created, count)))
        pending = _schedules(scheduler)

        # 2. sweeps: nothing due yet, then everything due at once, then nothing left
        idle = _median(lambda: twin.fire_due(T0 + WAIT - timedelta(seconds=1)), IDLE_RUNS)
        rows.append((f"sweep, nothing due ({pending} pending)", idle, f"median of {IDLE_RUNS}"))
        sends = _Stopwatch(sqs, "SendMessageBatch")
        started = time.perf_counter()
        fired = twin.fire_due(T0 + WAIT)
        swept = time.perf_counter() - started
        sends.stop_watching()
        rows.append((f"sweep, {fired} due at once", swept, _per(swept, fired)))
        rows.append((f"  of which {sends.calls} SendMessageBatch (botocore + moto)", sends.total, ""))
        started = time.perf_counter()
        bodies = _drain(sqs, queue_url)
        drained = time.perf_counter() - started
        rows.append((f"receive + delete {len(bodies)} messages", drained, "checking only"))
        again = twin.fire_due(T0 + WAIT + timedelta(minutes=5))
        empty_sweep = _median(lambda: twin.fire_due(T0 + WAIT + timedelta(minutes=5)), IDLE_RUNS)
        rows.append(("sweep, nothing left", empty_sweep, f"median of {IDLE_RUNS}"))
        after = _drain(sqs, queue_url)
        left = _schedules(scheduler)

    width = max(len(name) for name, _, _ in rows)
    print(f"{'FIFO queue like WorkflowQueue' if fifo else 'standard queue'}, {count} timers\n")
    print(f"{'step':<{width}}  {'time':>10}  note")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {_duration(seconds):>10}  {note}".rstrip())
    distinct = len(set(bodies))
    checks = {
        f"fired {count}": fired == count,
        f"{count} messages received": len(bodies) == count,
        f"{count} distinct bodies": distinct == count,
        "second sweep fired none, queue stayed empty": again == 0 and not after,
        "no schedule left (ActionAfterCompletion DELETE)": left == 0,
    }
    print()
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    print(
        f"\nIn AWS (default quotas, primary Regions): creating {count} schedules at {CREATE_SCHEDULE_TPS:,} "
        f"CreateSchedule/s takes >= {count / CREATE_SCHEDULE_TPS:g} s; delivering {count} due at once at "
        f"{INVOCATIONS_TPS:,} invocations/s spreads them over >= {count / INVOCATIONS_TPS:g} s (throttled, not lost)."
    )
    if not all(checks.values()):
        raise SystemExit(1)


class _Stopwatch:
    """Time spent in one operation of a botocore client, from its ``before-call`` to its ``after-call`` event."""

    def __init__(self, client: Any, operation: str) -> None:
        self.client, self.events = client, (f"before-call.sqs.{operation}", f"after-call.sqs.{operation}")
        self.calls, self.total, self._started = 0, 0.0, 0.0
        client.meta.events.register(self.events[0], self._start)
        client.meta.events.register(self.events[1], self._stop)

    def _start(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _stop(self, **_: Any) -> None:
        self.calls += 1
        self.total += time.perf_counter() - self._started

    def stop_watching(self) -> None:
        self.client.meta.events.unregister(self.events[0], self._start)
        self.client.meta.events.unregister(self.events[1], self._stop)


def _schedules(scheduler: Any) -> int:
    total, token = 0, None
    while True:
        page = scheduler.list_schedules(GroupName=GROUP, MaxResults=100, **({"NextToken": token} if token else {}))
        total += len(page["Schedules"])
        token = page.get("NextToken")
        if not token:
            return total


def _drain(sqs: Any, queue_url: str) -> list[str]:
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


def _median(run: Callable[[], object], times: int) -> float:
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _per(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.2f} ms each, {count / seconds:,.0f}/s" if count and seconds else ""


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
