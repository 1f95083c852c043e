"""Lambda's event sources, reproduced against moto: SQS event-source mappings and rate schedules.

SQS, as Lambda polls it: batches of up to BatchSize gathered for at most MaximumBatchingWindowInSeconds;
on success the batch is deleted; on a function error nothing is deleted (every message returns after the
visibility timeout); with ReportBatchItemFailures only the listed messages stay, and an invalid report counts as a
failure of the whole batch. Receive counts, DLQ redrive after maxReceiveCount and FIFO group locking are the
queue's own behaviour, which moto implements.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hilo.local.runtime import FunctionPool, InvocationError

LogLine = Callable[[str], None]


@dataclass(frozen=True)
class SqsMapping:
    """One SQS event of a function, resolved."""

    function: str
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    enabled: bool = True


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """The record Lambda builds for one received SQS message."""
    attributes = dict(message.get("Attributes", {}))
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody")
        or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_item_ids(result: Any, batch_ids: set[str]) -> set[str] | None:
    """The message ids a partial-batch response reports as failed; None when the report is invalid.

    An invalid report (an unknown or empty itemIdentifier, a wrong shape) makes Lambda treat the whole batch as
    failed, so the caller then keeps every message.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        return set()
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            return None
        ids.add(identifier)
    return ids


class SqsPoller:
    """Polls one queue for one function until stopped."""

    def __init__(self, mapping: SqsMapping, pool: FunctionPool, sqs: Any, region: str, log: LogLine) -> None:
        self.mapping = mapping
        self.pool = pool
        self.sqs = sqs
        self.region = region
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sqs-{mapping.function}")
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _receive(self, limit: int, wait_s: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.mapping.queue_url,
            MaxNumberOfMessages=max(1, min(10, limit)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _gather(self) -> list[dict[str, Any]]:
        fifo = self.mapping.queue_url.endswith(".fifo")
        batch = self._receive(self.mapping.batch_size, wait_s=0 if fifo else 1)
        if not batch:
            if fifo:
                self._stop.wait(0.2)
            return batch
        window_ends = time.monotonic() + self.mapping.batching_window_s
        while len(batch) < self.mapping.batch_size and time.monotonic() < window_ends and not self._stop.is_set():
            more = self._receive(self.mapping.batch_size - len(batch), wait_s=0)
            if not more:
                time.sleep(min(0.2, max(0.0, window_ends - time.monotonic())))
            batch.extend(more)
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._gather()
            except Exception as error:
                if not self._stop.is_set():
                    self.log(f"sqs poller {self.mapping.function}: receive failed: {error}")
                    time.sleep(0.5)
                continue
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        self.batches += 1
        event = {"Records": [sqs_record(message, self.mapping.queue_arn, self.region) for message in batch]}
        ids = {message["MessageId"] for message in batch}
        try:
            result = self.pool.invoke(event)
        except InvocationError as error:
            self.log(
                f"{self.mapping.function}: batch of {len(batch)} failed ({error}); "
                "all of it returns after the visibility timeout"
            )
            return
        failed = failed_item_ids(result, ids) if self.mapping.report_batch_item_failures else set()
        if failed is None:
            self.log(f"{self.mapping.function}: invalid batchItemFailures; the whole batch of {len(batch)} is retried")
            return
        done = [message for message in batch if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if failed:
            self.log(f"{self.mapping.function}: {len(failed)} of {len(batch)} records failed and will be retried")


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int | None:
    """Seconds between runs of ``rate(N unit)``; None for expressions the twin does not run (cron, at)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


@dataclass
class RateSchedule:
    """A Schedule/ScheduleV2 event with a rate expression, driven by the twin's (movable) clock."""

    function: str
    name: str
    every_s: int
    input: Any
    next_at: float


def scheduled_event(schedule: RateSchedule, account_id: str, region: str, at: datetime) -> Any:
    """The event EventBridge sends for a schedule (or its configured Input)."""
    if schedule.input is not None:
        return schedule.input
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{schedule.name}"],
        "detail": {},
    }
