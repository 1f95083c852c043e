"""Sends one pydantic command to an SQS queue: standard (optionally delayed, MergeQueue's sweeps) or FIFO."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from shared.adapters import aws
from shared.errors import RetryableError

#: SQS's longest per-message delay.
MAX_DELAY_SECONDS = 900


class CommandQueue:
    """A queue whose consumer is idempotent, so a command sent twice (a retried send) is harmless."""

    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs

    def send(
        self, command: BaseModel, delay_seconds: int = 0, *, group_id: str | None = None, dedup_id: str | None = None
    ) -> None:
        """Enqueue ``command`` as JSON; RetryableError if SQS fails.

        Standard queue: visible after ``delay_seconds`` (0-900). FIFO queue: ``group_id`` and ``dedup_id`` are
        required (FIFO queues take no per-message delay; a wait is a timer, ``shared.adapters.timers``).
        """
        self._sqs = self._sqs or aws.client("sqs")
        fifo: dict[str, Any] = {}
        if group_id is not None:
            if dedup_id is None or delay_seconds:
                raise ValueError("a FIFO message needs a dedup id and takes no delay")
            fifo = {"MessageGroupId": group_id, "MessageDeduplicationId": dedup_id}
        elif delay_seconds:
            fifo = {"DelaySeconds": max(0, min(delay_seconds, MAX_DELAY_SECONDS))}
        try:
            self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=command.model_dump_json(), **fifo)
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not enqueue the command; try again.") from error
