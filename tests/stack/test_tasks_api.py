"""Tasks and enrolments over real HTTP on the local twin: a caller's customer gets a task for ``ventas`` (as the
workflow step function will write it), an agent finds it on the customer and in the queue, closes it once, and sees
the customer's journeys. ``GET /v1/tasks`` needs its route in template.yaml (``Tasks``/``TasksAny`` on
AgentApiFunction)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from hilo.local.stack import LocalStack
from shared.adapters.task_store import TaskStore
from shared.tasks import Task
from tests.helpers import HttpResult, http
from tests.stack.test_agent_api import AGENT, call_from, wait_for

pytestmark = pytest.mark.stack


def agent(stack: LocalStack, method: str, path: str, body: Any = None) -> HttpResult:
    data = json.dumps(body).encode() if body is not None else None
    return http(method, f"{stack.api_url}{path}", data, {**AGENT, "content-type": "application/json"})


def a_caller_with_a_task(stack: LocalStack, queue: str) -> tuple[str, Task]:
    """A customer who called, and a task for ``queue`` about them, written as the workflow step function writes it."""
    national = f"300{secrets.randbelow(10**7):07d}"
    call_from(stack, f"+57{national}")
    card = wait_for(stack, f"/v1/customers?phone=%2B57{national}", lambda body: body["customer"]["id"])
    customer_id = card["customer"]["id"]
    task = Task(id=f"workflow:enr_{secrets.token_hex(8)}:tarea_sin_respuesta", customer_id=customer_id,
                title="Lead sin respuesta tras descargar un documento", queue=queue, priority="high",
                due_at=datetime.now(UTC) + timedelta(days=2), data={"document_title": "Guía de crédito"},
                source="workflow:documento_descargado", created_at=datetime.now(UTC))  # fmt: skip
    store = TaskStore(stack.physical_id("ProfileTable"), client=stack.client("dynamodb"))
    assert store.create(task)
    assert not store.create(task)
    return customer_id, task


def test_an_agent_reads_and_closes_a_customers_task(hilo_stack: LocalStack) -> None:
    # Given a caller with a task for sales
    customer_id, task = a_caller_with_a_task(hilo_stack, "ventas")
    path = f"/v1/customers/{customer_id}/tasks/{quote(task.id, safe='')}"

    # When an agent reads the customer's tasks and the task, then closes it
    listed = agent(hilo_stack, "GET", f"/v1/customers/{customer_id}/tasks")
    one = agent(hilo_stack, "GET", path)
    closed = agent(hilo_stack, "POST", f"{path}/close", {"status": "done", "outcome": "Agendó una visita"})

    # Then they saw it once, and it is now done by the dev agent; once more is the same answer, the other way a 409
    assert listed.status == 200
    assert listed.json() == {"tasks": [task.as_json()]}
    assert one.json() == task.as_json()
    assert closed.status == 200
    assert (closed.json()["status"], closed.json()["closed_by"], closed.json()["version"]) == ("done", "dev", 2)
    assert agent(hilo_stack, "POST", f"{path}/close", {"status": "done"}).json() == closed.json()
    conflict = agent(hilo_stack, "POST", f"{path}/close", {"status": "canceled"})
    assert (conflict.status, conflict.json()["error"]) == (409, "conflict")
    # and a customer nobody enrolled has no journeys yet; an unknown one is a 404
    assert agent(hilo_stack, "GET", f"/v1/customers/{customer_id}/enrolments").json() == {"enrolments": []}
    assert agent(hilo_stack, "GET", "/v1/customers/cus_nobody/enrolments").status == 404


def test_a_queue_lists_its_open_tasks_until_they_are_closed(hilo_stack: LocalStack) -> None:
    # Given a task in a queue of this test's own
    queue = f"ventas_{secrets.token_hex(4)}"
    customer_id, task = a_caller_with_a_task(hilo_stack, queue)

    # When an agent opens the queue, before and after closing the task
    before = agent(hilo_stack, "GET", f"/v1/tasks?queue={queue}")
    path = f"/v1/customers/{customer_id}/tasks/{quote(task.id, safe='')}/close"
    assert agent(hilo_stack, "POST", path, {"status": "canceled"}).status == 200
    after = agent(hilo_stack, "GET", f"/v1/tasks?queue={queue}")

    # Then
    assert before.status == 200, before.json()
    assert [listed["id"] for listed in before.json()["tasks"]] == [task.id]
    assert after.json() == {"tasks": [], "next_cursor": None}
    missing = agent(hilo_stack, "GET", "/v1/tasks")
    assert (missing.status, missing.json()["details"]) == (400, [{"field": "queue"}])
