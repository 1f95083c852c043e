"""OutboundQueue.fifo as a port: ``send(command)`` puts one ``OutboundCommand`` on it, in its customer's order.

Group id = the customer (two messages to one customer leave in the order they were decided); dedup id = a hash of
the command's key (``shared.models.outbound.dedup_id``), so the same command sent twice within SQS's five minutes is
one message, and after that the planner's own dedup on the key makes it one message anyway.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.command_queue import CommandQueue
from shared.models.outbound import OutboundCommand, dedup_id


class OutboundQueue:
    """``CommandSender`` (``shared.delivery_status``, ``shared.outbound.sending``, ingest) on OutboundQueue.fifo."""

    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self._queue = CommandQueue(queue_url, sqs)

    def send(self, command: OutboundCommand) -> None:
        """Enqueue ``command``; ``RetryableError`` if SQS refused or could not be reached (the caller retries)."""
        self._queue.send(command, group_id=command.customer_id, dedup_id=dedup_id(command.key))
