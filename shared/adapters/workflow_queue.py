"""WorkflowQueue.fifo as ports: ``WakeQueue.send`` (the events router) and ``WorkflowTimers`` (waits).

Group id = the enrolment, so one enrolment's wakes are processed one at a time, in the order they were queued; dedup
id = a hash of ``StepWake.dedup_key``, so a start, a timer or an event queued twice within SQS's five minutes is one
message (and ``advance`` ignores a later repeat anyway). Timers reach the queue through EventBridge Scheduler, which
sends no dedup id: the queue's content-based deduplication covers those.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.adapters.command_queue import CommandQueue
from shared.adapters.timers import Timers
from shared.models.outbound import dedup_id
from shared.workflows.engine import StepWake


class WakeQueue:
    """``shared.workflows.router.WakeQueue`` on WorkflowQueue.fifo."""

    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self._queue = CommandQueue(queue_url, sqs)

    def send(self, wake: StepWake) -> None:
        """Enqueue ``wake``; ``RetryableError`` if SQS refused or could not be reached."""
        self._queue.send(wake, group_id=wake.enrolment_id, dedup_id=dedup_id(wake.dedup_key))


class WorkflowTimers:
    """``shared.workflows.effects.WakeTimers``: a wait's timer puts its ``StepWake`` on WorkflowQueue at its time."""

    def __init__(self, timers: Timers, queue_arn: str) -> None:
        self._timers = timers
        self._queue_arn = queue_arn

    def schedule(self, key: str, at: datetime, body: StepWake) -> None:
        self._timers.schedule(key, at, self._queue_arn, body.model_dump_json(), group_id=body.enrolment_id)

    def cancel(self, key: str) -> None:
        self._timers.cancel(key)
