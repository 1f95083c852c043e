"""Corrections to moto where it behaves unlike the AWS service a Hilo function relies on.

Applied once by the local twin (never in unit tests using ``mock_aws``), each with the behaviour AWS documents.
"""

from __future__ import annotations

import threading
from typing import Any

_applied = False
_dedup_lock = threading.Lock()


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

    # SQS FIFO: a deduplication id is remembered for 5 minutes after the message was sent, even once the message was
    # received and deleted. moto only compares with messages still in the queue, so a provider retry that arrives
    # after a consumer (ingest) took the first copy would be enqueued again. Remember sent ids per queue (and per
    # group when the scope is messageGroup) for the window.
    original_add = Queue.add_message

    def add_message(self: Queue, message: Any) -> None:
        if not self.fifo_queue or not message.deduplication_id:
            return original_add(self, message)
        with _dedup_lock:
            if not _first_within_window(self, message):
                return None
        return original_add(self, message)

    def _first_within_window(self: Queue, message: Any) -> bool:
        seen: dict[tuple[str | None, str], int] = self.__dict__.setdefault("_hilo_dedup_seen", {})
        scope = message.group_id if self.attributes.get("DeduplicationScope") == "messageGroup" else None
        key, now_ms = (scope, message.deduplication_id), int(message.sent_timestamp)
        window_ms = 5 * 60 * 1000
        for stale in [k for k, at in seen.items() if now_ms - at >= window_ms]:
            del seen[stale]
        if key in seen:
            return False
        seen[key] = now_ms
        return True

    Queue.add_message = add_message  # type: ignore[method-assign]
    _applied = True
