"""Tasks for people on ProfileTable: one item per task under its customer, in its queue's listing while open.

A task is ``CUST#<customer id>`` / ``TASK#<task id>`` (docs/data-model.md, "Tasks for people"): the ``Task`` model as
JSON-like attributes, ``version`` a number the close is conditioned on. While it is open it carries
``gsi1pk=TASKQ#<queue>`` (``TASKA#<assignee>`` when it has no queue) and ``gsi1sk=<due_at or created_at, fixed
width>#<task id>``, so a queue's open tasks are one query of gsi1, soonest due first; closing drops those keys, so the
index holds open tasks only.

The task id is its creator's idempotency key: ``create`` is a put only if absent, so a redelivered workflow step makes
no second task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import ProfileStore, customer_pk
from shared.errors import Conflict, NotFound, RetryableError
from shared.models.common import sortable_timestamp
from shared.tasks import Task, TaskStatus

TASK: Final = "TASK"
#: A close that loses a race re-reads and decides again; more rounds than this means something keeps rewriting it.
_CLOSE_ATTEMPTS: Final = 3


def task_sk(task_id: str) -> str:
    """Sort key of a task under its customer."""
    return f"TASK#{task_id}"


def queue_pk(queue: str) -> str:
    """gsi1 partition of a queue's open tasks."""
    return f"TASKQ#{queue}"


def assignee_pk(assignee: str) -> str:
    """gsi1 partition of the open tasks given to one agent and no queue."""
    return f"TASKA#{assignee}"


@dataclass(frozen=True)
class TaskPage:
    """One page of a queue's open tasks, soonest due first, and the cursor of the next (None on the last)."""

    tasks: tuple[Task, ...]
    cursor: str | None


class TaskStore(ProfileStore):
    """The task repository: workflows create tasks, agents list and close them."""

    def create(self, task: Task) -> bool:
        """Put a new task unless one with its id exists under the customer (one conditional ``PutItem``).

        Returns
        -------
        bool
            False when that id exists (a redelivered step): nothing was written, the stored task stands.
        """
        return self._conditionally(
            "put_item", Item=to_item(_item(task)), ConditionExpression="attribute_not_exists(pk)"
        )

    def get(self, customer_id: str, task_id: str) -> Task | None:
        """One task, strongly consistent; None if unknown."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(customer_id), "sk": task_sk(task_id)}),
            ConsistentRead=True,
        )
        return _task(from_item(found["Item"])) if "Item" in found else None

    def for_customer(self, customer_id: str) -> tuple[Task, ...]:
        """Every task of the customer, open and closed, newest first (by ``created_at``; ids do not sort by time)."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :task)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":task": "TASK#"}),
        )
        tasks = (_task(values) for values in items)
        return tuple(sorted(tasks, key=lambda task: (task.created_at, task.id), reverse=True))

    def open_in_queue(self, queue: str, *, limit: int = 50, cursor: str | None = None) -> TaskPage:
        """One page of the queue's open tasks through gsi1, soonest due first (a task with no due date counts as due
        when it was created).

        Parameters
        ----------
        queue : str
            Which queue (team).
        limit : int
            Tasks per page (1-100).
        cursor : str, optional
            The ``cursor`` of the previous page.

        Returns
        -------
        TaskPage
            The tasks and the cursor of the next page.

        Raises
        ------
        InvalidInput
            The cursor is not one this method returned for this queue, or the limit is out of range.
        """
        return self._open_in(queue_pk(queue), limit=limit, cursor=cursor)

    def close(
        self, customer_id: str, task_id: str, status: TaskStatus, outcome: str | None, agent_id: str, at: datetime
    ) -> Task:
        """Close an open task as ``done`` or ``canceled``: a ``PutItem`` conditioned on it being open at the version
        read, which drops it from its queue's listing.

        Returns
        -------
        Task
            The task as closed; for a task already closed with this ``status``, the task as it was closed first
            (a repeated request; the first outcome stands).

        Raises
        ------
        NotFound
            No such task under this customer.
        Conflict
            The task was already closed with the other status.
        ValueError
            ``status`` is ``open``, or the outcome or agent id break the task's rules.
        """
        for _ in range(_CLOSE_ATTEMPTS):
            task = self.get(customer_id, task_id)
            if task is None:
                raise NotFound("No such task.")
            if not task.open:
                if task.status == status:
                    return task
                raise Conflict(f"The task is already {task.status}; it cannot also be {status}.")
            closed = task.closed(status, outcome=outcome, by=agent_id, at=at)
            written = self._conditionally(
                "put_item",
                Item=to_item(_item(closed)),
                ConditionExpression="version = :read AND #status = :open",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":read": task.version, ":open": str(TaskStatus.OPEN)}),
            )
            if written:
                return closed
        raise RetryableError("The task keeps changing; try again.")

    def _open_in(self, partition: str, *, limit: int, cursor: str | None) -> TaskPage:
        items, next_cursor = self._index_page("gsi1", partition, item_prefix="TASK#", forward=True, limit=limit,
                                              cursor=cursor, what="queue")  # fmt: skip
        return TaskPage(tasks=tuple(_task(item) for item in items), cursor=next_cursor)


def _item(task: Task) -> dict[str, Any]:
    index = {}
    if task.open:
        partition = queue_pk(task.queue) if task.queue is not None else assignee_pk(str(task.assignee))
        index = {"gsi1pk": partition, "gsi1sk": f"{sortable_timestamp(task.due_at or task.created_at)}#{task.id}"}
    return {"pk": customer_pk(task.customer_id), "sk": task_sk(task.id), "type": TASK,
            **task.model_dump(mode="json"), **index}  # fmt: skip


def _task(values: Mapping[str, Any]) -> Task:
    # The model's fields only: the keys, and what others add to any item they copy, stay behind.
    return Task.model_validate({name: value for name, value in values.items() if name in Task.model_fields})
