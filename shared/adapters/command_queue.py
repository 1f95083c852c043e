"""Sends one pydantic command to a standard SQS queue, optionally delayed (MergeQueue's sweeps)."""

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

    def send(self, command: BaseModel, delay_seconds: int = 0) -> None:
        """Enqueue ``command`` as JSON, visible after ``delay_seconds`` (0-900); RetryableError if SQS fails."""
        self._sqs = self._sqs or aws.client("sqs")
        try:
            self._sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=command.model_dump_json(),
                DelaySeconds=max(0, min(delay_seconds, MAX_DELAY_SECONDS)),
            )
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not enqueue the command; try again.") from error
