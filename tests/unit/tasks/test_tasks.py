"""Tasks for people on ProfileTable (moto): one task per effect key however often a step runs, a queue listed soonest
due first and paged, closing that takes a task out of its queue once, and the rules a task keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.adapters.task_store import TaskStore
from shared.errors import Conflict, InvalidInput, NotFound
from shared.models.common import new_id
from shared.tasks import MAX_DATA_BYTES, Task, TaskKind, TaskStatus, task_from_effect
from shared.workflows.engine import CreateTask, Handoff
from shared.workflows.language import Priority
from tests.unit.ingest.support import run_together
from tests.unit.tasks.conftest import Table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def customer(seed: str = "ana") -> str:
    return new_id("cus", at=T0, seed=f"tasks:{seed}")


def a_task(key: str = "workflow:enr_1:tarea", *, who: str = "ana", **fields: Any) -> Task:
    values = {"id": key, "customer_id": customer(who), "title": "Llamar a Ana", "queue": "ventas",
              "source": "workflow:documento_descargado", "created_at": T0, **fields}  # fmt: skip
    return Task.model_validate(values)


@pytest.fixture
def store(table: Table) -> TaskStore:
    return TaskStore(table.name, table.dynamodb)


def in_queue(store: TaskStore, queue: str = "ventas") -> list[str]:
    return [task.id for task in store.open_in_queue(queue).tasks]


# ------------------------------------------------------------------------------------------ create


def test_a_redelivered_effect_makes_one_task(store: TaskStore, table: Table) -> None:
    # Given the task a workflow step asked for
    first = a_task(due_at=T0 + timedelta(days=2), data={"document_title": "Guía de crédito"})
    assert store.create(first)
    # When the same step runs again (the same key), even with different fields
    again = store.create(a_task(title="Otro título"))
    # Then nothing was written: one item, the first one, stored as the data model says
    assert again is False
    (item,) = table.items("TASK")
    assert (item["pk"], item["sk"]) == (f"CUST#{first.customer_id}", "TASK#workflow:enr_1:tarea")
    assert item["gsi1pk"] == "TASKQ#ventas"
    assert item["gsi1sk"] == "2026-03-04T15:00:00.000000Z#workflow:enr_1:tarea"
    assert item["version"] == 1
    assert store.get(first.customer_id, first.id) == first
    assert store.get(first.customer_id, "workflow:enr_1:otra") is None


def test_a_task_for_an_agent_alone_is_listed_under_the_agent_not_a_queue(store: TaskStore, table: Table) -> None:
    store.create(a_task(queue=None, assignee="agent-7"))
    (item,) = table.items("TASK")
    assert item["gsi1pk"] == "TASKA#agent-7"
    assert in_queue(store) == []


# ------------------------------------------------------------------------------------------ queue listing


def test_a_queue_lists_its_open_tasks_soonest_due_first_and_pages(store: TaskStore) -> None:
    # Given tasks due at different times (one undated: due when created), another queue's task, an agent's task
    store.create(a_task("t-late", due_at=T0 + timedelta(days=3)))
    store.create(a_task("t-undated", who="bea", created_at=T0 + timedelta(hours=5)))
    store.create(a_task("t-soon", who="carla", due_at=T0 + timedelta(hours=1)))
    store.create(a_task("t-tomorrow", who="bea", due_at=T0 + timedelta(days=1)))
    store.create(a_task("t-other-queue", queue="soporte", due_at=T0))
    store.create(a_task("t-agent", queue=None, assignee="agent-7", due_at=T0))

    # When the queue is read two at a time
    pages = [store.open_in_queue("ventas", limit=2)]
    while pages[-1].cursor is not None:
        pages.append(store.open_in_queue("ventas", limit=2, cursor=pages[-1].cursor))

    # Then
    assert [task.id for page in pages for task in page.tasks] == ["t-soon", "t-undated", "t-tomorrow", "t-late"]
    assert [len(page.tasks) for page in pages][:2] == [2, 2]
    assert in_queue(store, "soporte") == ["t-other-queue"]
    assert in_queue(store, "nadie") == []


def test_a_cursor_serves_only_its_own_queue(store: TaskStore) -> None:
    store.create(a_task("t-1"))
    store.create(a_task("t-2", who="bea"))
    store.create(a_task("s-1", queue="soporte"))
    store.create(a_task("s-2", queue="soporte", who="bea"))
    cursor = store.open_in_queue("soporte", limit=1).cursor
    assert cursor is not None
    for bad in ("not-a-cursor!", "e30", "W10", cursor[:-4]):  # garbage, {}, [], truncated
        with pytest.raises(InvalidInput):
            store.open_in_queue("ventas", cursor=bad)
    with pytest.raises(InvalidInput, match="not valid for this queue"):
        store.open_in_queue("ventas", cursor=cursor)
    assert [task.id for task in store.open_in_queue("soporte", cursor=cursor).tasks] == ["s-2"]
    with pytest.raises(InvalidInput):
        store.open_in_queue("ventas", limit=0)


# ------------------------------------------------------------------------------------------ close


def test_closing_records_who_and_how_and_takes_it_out_of_the_queue(store: TaskStore, table: Table) -> None:
    # Given two open tasks in the queue
    task = a_task("t-1")
    store.create(task)
    store.create(a_task("t-2", who="bea"))
    # When an agent closes one
    closed = store.close(
        task.customer_id, task.id, TaskStatus.DONE, "Agendó una cita", "agent-7", T0 + timedelta(hours=2)
    )
    # Then it is done, by whom and when, one version on, out of the queue, kept under the customer
    assert (closed.status, closed.outcome, closed.closed_by) == (TaskStatus.DONE, "Agendó una cita", "agent-7")
    assert (closed.closed_at, closed.version) == (T0 + timedelta(hours=2), 2)
    assert store.get(task.customer_id, task.id) == closed
    assert in_queue(store) == ["t-2"]
    item = next(item for item in table.items("TASK") if item["id"] == "t-1")
    assert "gsi1pk" not in item
    assert "gsi1sk" not in item
    assert store.for_customer(task.customer_id) == (closed,)


def test_closing_again_the_same_way_answers_the_first_close_and_the_other_way_is_a_conflict(store: TaskStore) -> None:
    task = a_task()
    store.create(task)
    first = store.close(task.customer_id, task.id, TaskStatus.CANCELED, "Ya compró", "agent-7", T0)
    # A repeat (a retried request, another agent) changes nothing and answers what was stored
    assert (
        store.close(task.customer_id, task.id, TaskStatus.CANCELED, None, "agent-9", T0 + timedelta(hours=1)) == first
    )
    with pytest.raises(Conflict, match="already canceled"):
        store.close(task.customer_id, task.id, TaskStatus.DONE, None, "agent-9", T0)
    assert store.get(task.customer_id, task.id) == first


def test_closing_an_unknown_task_is_not_found(store: TaskStore) -> None:
    store.create(a_task())
    with pytest.raises(NotFound):
        store.close(customer(), "workflow:enr_1:otra", TaskStatus.DONE, None, "agent-7", T0)
    with pytest.raises(NotFound):
        store.close(customer("bea"), "workflow:enr_1:tarea", TaskStatus.DONE, None, "agent-7", T0)


def test_two_agents_closing_at_once_the_task_ends_one_way(store: TaskStore) -> None:
    # Given an open task; when six agents close it at the same instant, half as done and half as canceled
    task = a_task()
    store.create(task)
    statuses = [TaskStatus.DONE, TaskStatus.CANCELED] * 3
    results = run_together([
        lambda status=status, n=n: store.close(task.customer_id, task.id, status, None, f"agent-{n}", T0)  # type: ignore[misc]
        for n, status in enumerate(statuses)
    ])  # fmt: skip
    # Then one close won; every agent who asked the same got the winner's task, the others a conflict
    stored = store.get(task.customer_id, task.id)
    assert stored is not None
    assert stored.version == 2
    for status, result in zip(statuses, results, strict=True):
        assert result == stored if status == stored.status else isinstance(result, Conflict), result


# ------------------------------------------------------------------------------------------ a customer's tasks


def test_a_customers_tasks_open_and_closed_newest_first(store: TaskStore) -> None:
    ana = customer()
    store.create(a_task("b-first", created_at=T0))
    store.create(a_task("a-second", created_at=T0 + timedelta(days=1)))
    store.create(a_task("c-third", created_at=T0 + timedelta(days=2), queue="soporte"))
    store.create(a_task("other", who="bea"))
    store.close(ana, "a-second", TaskStatus.DONE, None, "agent-7", T0 + timedelta(days=3))
    tasks = store.for_customer(ana)
    assert [task.id for task in tasks] == ["c-third", "a-second", "b-first"]
    assert [task.status for task in tasks] == [TaskStatus.OPEN, TaskStatus.DONE, TaskStatus.OPEN]
    assert store.for_customer(customer("nobody")) == ()


# ------------------------------------------------------------------------------------------ the model


def test_a_workflow_task_effect_becomes_a_follow_up_with_its_key_as_id() -> None:
    effect = CreateTask("workflow:enr_01J:tarea_sin_respuesta", customer(), "Lead sin respuesta", None, "ventas", None,
                        Priority.HIGH, T0 + timedelta(days=2), {"document_title": "Guía"}, T0)  # fmt: skip
    task = task_from_effect(effect, source="workflow:documento_descargado")
    assert task == Task(id="workflow:enr_01J:tarea_sin_respuesta", customer_id=effect.customer_id,
                        kind=TaskKind.FOLLOW_UP, title="Lead sin respuesta", queue="ventas", priority=Priority.HIGH,
                        due_at=T0 + timedelta(days=2), data={"document_title": "Guía"},
                        source="workflow:documento_descargado", created_at=T0)  # fmt: skip
    assert task.open


def test_a_handoff_becomes_a_handoff_task_titled_by_its_reason() -> None:
    asked = Handoff("workflow:enr_1:asesor", customer(), "soporte", "Pidió un asesor", Priority.URGENT, T0)
    short = task_from_effect(asked, source="workflow:bot")
    assert (short.kind, short.title, short.description, short.queue) == (
        TaskKind.HANDOFF, "Pidió un asesor", None, "soporte")  # fmt: skip
    reason = "El cliente está molesto " * 20  # 480 characters
    long = task_from_effect(Handoff("workflow:enr_1:asesor", customer(), "soporte", reason, Priority.HIGH, T0),
                            source="workflow:bot")  # fmt: skip
    assert len(long.title) == 200
    assert long.title.endswith("…")
    assert long.description == reason.strip()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"queue": None}, "a queue, an assignee, or both"),
        ({"data": {"notes": "x" * MAX_DATA_BYTES}}, "at most 8192"),
        ({"data": {"score": float("nan")}}, "no NaN"),
        ({"id": "tarea con espacios"}, "pattern"),
        ({"id": "t" * 201}, "pattern"),
        ({"queue": "Ventas"}, "lower-case"),
        ({"title": " "}, "at least 1 character"),
        ({"status": "done"}, "closed_at is set when"),
        ({"closed_at": T0}, "closed_at is set when"),
        ({"created_at": datetime(2026, 3, 2, 15, 0)}, "naive"),
    ],
)
def test_a_task_keeps_its_rules(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        a_task(**fields)


def test_an_id_may_carry_the_characters_keys_are_made_of() -> None:
    assert a_task("workflow:enr_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2:tarea-1.v2#a").id.endswith("#a")


def test_a_task_is_closed_as_done_or_canceled_once() -> None:
    task = a_task()
    with pytest.raises(ValueError, match="done or canceled"):
        task.closed(TaskStatus.OPEN, outcome=None, by="agent-7", at=T0)
    done = task.closed(TaskStatus.DONE, outcome=None, by="agent-7", at=T0)
    with pytest.raises(ValueError, match="already done"):
        done.closed(TaskStatus.CANCELED, outcome=None, by="agent-7", at=T0)
    with pytest.raises(ValidationError):
        task.closed(TaskStatus.DONE, outcome="x" * 501, by="agent-7", at=T0)
