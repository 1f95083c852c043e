"""Corrections to moto where it behaves unlike the AWS service a Hilo function relies on.

Applied once by the local twin (never in unit tests using ``mock_aws``), each with the behaviour AWS documents.
"""

from __future__ import annotations

from typing import Any

_applied = False


def apply() -> None:
    """Patch moto in this process. Idempotent."""
    global _applied
    if _applied:
        return
    from moto.sqs.models import Queue, SQSBackend

    # SQS FIFO: a message group is locked only while one of its messages is in flight, and redelivery starts again
    # at the group's oldest message. moto keeps messages whose visibility timeout has expired in its "pending" set
    # until its receive loop walks past them, so it skips the oldest and delivers later ones first. Count only
    # messages still invisible, and forget expired ones before each receive so one call sees one consistent state.
    # (The twin polls FIFO queues without long polling, whose internal waits would make that state stale again.)
    def pending_message_groups(self: Queue) -> set[str]:
        return {m.group_id for m in self._pending_messages if m.group_id is not None and not m.visible}

    original_receive = SQSBackend.receive_message

    def receive_message(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            for message in [m for m in queue.pending_messages if m.visible]:
                queue.pending_messages.discard(message)
        return original_receive(self, queue_name, *args, **kwargs)

    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    _applied = True
