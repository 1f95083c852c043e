"""Corrections to moto where it behaves unlike the AWS service a Hilo function relies on.

Applied once by the local twin (never in unit tests using ``mock_aws``), each with the behaviour AWS documents:

- SQS FIFO redelivery starts again at a message group's oldest message.
- SQS FIFO remembers a deduplication id for 5 minutes after the send, not only while the message is queued.
- DynamoDB requests are atomic (``serialise_dynamodb``, which concurrency tests also use on their own moto server).

And where moto slows down with use in a way AWS does not, so a long ``hilo dev`` or test session stays fast:

- SQS SendMessage and ReceiveMessage do not get slower as a queue fills.
- moto's server does not list its own package folder on every request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_applied = False
_dedup_lock = threading.Lock()

#: Held while moto handles one DynamoDB request: every moto server and ``mock_aws`` of this process shares it.
_dynamodb_request_lock = threading.Lock()
_dynamodb_patch_lock = threading.Lock()
_dynamodb_users = 0
_dynamodb_original: Any = None


def serialise_dynamodb() -> Callable[[], None]:
    """Make moto's DynamoDB handle one request at a time in this process, as DynamoDB's requests are atomic.

    moto evaluates a condition and then writes, with nothing in between to stop another thread, so two conditional
    writes racing for one key can both succeed. Its ``TransactWriteItems`` deep-copies the whole table first and,
    when an item fails its condition, restores that copy: every request that wrote meanwhile is silently undone
    (and the copy itself crashes with "dictionary changed size during iteration" when a write lands during it).
    In DynamoDB each request takes effect whole or not at all, and a cancelled transaction changes nothing. One
    lock around moto's DynamoDB request handling gives that guarantee; the races left are between the callers'
    requests, which is what Hilo's conditions and transactions are written for.

    Returns
    -------
    Callable[[], None]
        Undoes this call. Calls nest: moto is patched on the first and restored by the last undo (the twin never
        undoes; tests use it as a context, ``tests.unit.ingest.support.atomic_dynamodb``).
    """
    global _dynamodb_users, _dynamodb_original
    from moto.dynamodb.responses import DynamoHandler

    with _dynamodb_patch_lock:
        if _dynamodb_users == 0:
            original = _dynamodb_original = DynamoHandler.call_action

            def call_action(self: DynamoHandler) -> Any:
                with _dynamodb_request_lock:
                    return original(self)

            DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        _dynamodb_users += 1
    undone = threading.Event()

    def undo() -> None:
        global _dynamodb_users
        with _dynamodb_patch_lock:
            if undone.is_set():
                return
            undone.set()
            _dynamodb_users -= 1
            if _dynamodb_users == 0:
                DynamoHandler.call_action = _dynamodb_original  # type: ignore[method-assign]

    return undo


def apply() -> None:
    """Patch moto in this process. Idempotent."""
    global _applied
    if _applied:
        return
    from moto import backends as moto_backends
    from moto.core.utils import unix_time_millis
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
        while seen:  # oldest first (insertion order): forget what left the window, stop at the first still in it
            oldest = next(iter(seen))
            if now_ms - seen[oldest] < window_ms:
                break
            del seen[oldest]
        if key in seen:
            return False
        seen[key] = now_ms
        return True

    Queue.add_message = add_message  # type: ignore[method-assign]

    # SQS: SendMessage and ReceiveMessage cost the same however many messages a queue holds. moto builds the queue's
    # attributes (with its approximate message counts) four times per message sent and three times per message
    # received, reading the clock twice per queued message each time; a queue nobody consumes yet (EventsQueue) made
    # every ingest slower than the one before (1,000 WhatsApp messages: ~180 s). Same counts, one clock read per count.
    def visible_messages(self: Queue) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed_count(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible_count(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    Queue.messages = property(visible_messages)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed_count)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible_count)  # type: ignore[method-assign,assignment]

    # moto's server lists its own package folder (a listdir and ~200 isdir calls) on every request, under its
    # dispatcher's lock, to tell a service name from a host name. The folder does not change while it runs.
    moto_modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: moto_modules

    # DynamoDB: the twin's functions (chat API, ingest, agent API) run concurrently against one moto server; without
    # this a cancelled transaction of one could undo another's committed write. Kept for the life of the process.
    serialise_dynamodb()
    _transactions_back_up_their_items()
    _queries_read_their_partition()
    _applied = True


def _queries_read_their_partition() -> None:
    """A table ``Query`` reads its partition, not the whole table.

    moto answers every ``Query`` by sorting all the table's items and filtering them by partition key, so each read of
    one customer's items costs as much as the table holds: a long session or a thousand-customer test slowed to
    seconds per step. A query on the table itself (not an index) now sees only its partition's items; index queries
    are unchanged. With requests serialised (``serialise_dynamodb``), the per-call view cannot leak into another.
    """
    from moto.dynamodb.models.table import Table

    original = Table.query

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None or hash_key is None or not self.range_key_attr:
            return original(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key) or {}
        in_partition = sorted(partition.values(), key=lambda item: item.range_key)
        self.all_items = lambda: in_partition  # type: ignore[method-assign]
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]


def _transactions_back_up_their_items() -> None:
    """``TransactWriteItems`` costs what its items cost, not what the whole table does.

    moto deep-copies every table a transaction names before it starts, to restore on cancellation: a transaction on a
    table of 50,000 items copies 50,000 items (a workflow run of a thousand enrolments spent most of its time there).
    Instead, copy the items the transaction names and, when it is cancelled, put those back. With requests
    serialised (``serialise_dynamodb``) nothing else writes meanwhile, so that restores exactly what moto's copy did.
    """
    import copy

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.exceptions import (
        MockValidationException,
        MultipleTransactionsException,
        TransactionCanceledException,
    )
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class _TablesAsThey:
        """``copy`` for moto's module: a table "copy" is the table itself; the items are backed up below."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for request in transact_items:
            _, operation = next(iter(request.items()))
            table = self.tables.get(operation.get("TableName"))
            if table is None:
                continue
            if "Key" in operation:
                key = operation["Key"]
            else:
                names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                key = {name: operation["Item"][name] for name in names if name in operation.get("Item", {})}
            found = self.get_item(table.name, key) if len(key) == len(table.schema) else None
            backups.append((table.name, key, copy.deepcopy(found.to_json()["Attributes"]) if found else None))
        try:
            original(self, transact_items)
        except (TransactionCanceledException, MultipleTransactionsException, MockValidationException):
            for table_name, key, attributes in reversed(backups):
                if attributes is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    dynamodb_models.copy = _TablesAsThey  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
