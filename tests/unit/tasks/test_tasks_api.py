"""The agent API's task and enrolment routes, through the Lambda handler with the events API Gateway sends (moto):
story 3 leaves a task for ``ventas``, an agent finds it in the queue and on the customer, closes it once, and sees
where the customer's journey stands."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from functions.agent_api import handler
from hilo.local.apigw import HttpRequest, build_event
from shared.adapters.enrolment_store import EnrolmentStore
from shared.adapters.profile_store import ProfileStore
from shared.adapters.task_store import TaskStore
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from shared.models.events import DomainEvent
from shared.tasks import Task, task_from_effect
from shared.workflows.catalog import shipped_workflows
from shared.workflows.engine import CreateTask, Customer, Enrolled, EnrolmentStatus, SetTimer, Start, advance, enrol
from tests.unit.ingest.support import ROOT, T0, FakeClock, FakePublisher, envelope
from tests.unit.tasks.conftest import Table

STORY_3 = "documento_descargado"


class Context:
    function_name = "AgentApiFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:AgentApiFunction"
    aws_request_id = "req-1"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


Call = Callable[..., Answer]


@pytest.fixture
def api(table: Table, monkeypatch: pytest.MonkeyPatch) -> Iterator[Call]:
    """Call the agent API as API Gateway would, as a verified agent (JWT claims), or with no token at all."""
    monkeypatch.setenv("PROFILE_TABLE_NAME", table.name)
    monkeypatch.delenv("HILO_LOCAL_MODE", raising=False)
    handler.settings_loader.cache_clear()
    handler.work.cache_clear()

    def call(method: str, path: str, body: Any = None, *, agent: str | None = "agent-7") -> Answer:
        headers = [("Content-Type", "application/json")] if body is not None else []
        data = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else b""
        prefix = "/v1/customers" if path.startswith("/v1/customers") else "/v1/tasks"
        proxy = {"proxy": path.partition("?")[0].removeprefix(prefix + "/")}
        event = build_event(HttpRequest(method, path, headers, data), f"ANY {prefix}/{{proxy+}}", proxy, "api1", "1234")
        if agent is not None:
            event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": agent}, "scopes": None}}
        response = handler.lambda_handler(event, Context())
        return Answer(response["statusCode"], json.loads(response["body"]))

    yield call
    handler.settings_loader.cache_clear()
    handler.work.cache_clear()


def a_customer(table: Table) -> str:
    ingest = Ingest(ProfileStore(table.name, table.dynamodb), FakePublisher(), Normaliser("CO"), FakeClock(T0))
    return ingest(envelope(channel="sms", provider="twilio")).customer_id


def downloaded(customer_id: str, at: datetime = T0) -> DomainEvent:
    return DomainEvent.new("document.downloaded", source="web", correlation_id="corr-1", customer_id=customer_id,
                           occurred_at=at, data={"document_title": "Guía de crédito"},
                           id_seed=f"downloaded:{customer_id}:{at.isoformat()}")  # fmt: skip


def story_3(table: Table, customer_id: str, *, timers: int) -> list[Any]:
    """The customer downloads a document and stays silent while ``timers`` waits run out; the effects, in order."""
    store, flow = EnrolmentStore(table.name, table.dynamodb), shipped_workflows().get(STORY_3)
    result = enrol(flow, downloaded(customer_id), None, (), T0)
    assert isinstance(result, Enrolled)
    assert store.create(result.enrolment)
    effects: list[Any] = []
    wake: Any = Start()
    at = T0
    for _ in range(timers + 1):
        loaded = store.get(customer_id, STORY_3, result.enrolment.id)
        assert loaded is not None
        advanced = advance(loaded, flow, Customer(), at, wake)
        assert store.save(advanced.enrolment, expected_version=loaded.version)
        effects.extend(advanced.effects)
        timer = [effect for effect in advanced.effects if isinstance(effect, SetTimer)]
        if timer:
            wake, at = timer[-1].body.wake, timer[-1].at
    return effects


def task_of(table: Table, effects: list[Any]) -> Task:
    """What the workflow step function does with the ``CreateTask`` effect (twice: the step was redelivered)."""
    (effect,) = [effect for effect in effects if isinstance(effect, CreateTask)]
    task = task_from_effect(effect, source=f"workflow:{STORY_3}")
    store = TaskStore(table.name, table.dynamodb)
    assert store.create(task)
    assert not store.create(task)
    return task


def test_story_3_leaves_one_task_for_ventas_that_an_agent_finds_and_closes(table: Table, api: Call) -> None:
    # Given a lead who never replied: story 3 ran to its end and the step created its task (twice)
    ana = a_customer(table)
    task = task_of(table, story_3(table, ana, timers=2))
    path = f"/v1/customers/{ana}/tasks/{quote(task.id, safe='')}"

    # When an agent of ventas opens the queue, then the customer's tasks, then the task
    queue = api("GET", "/v1/tasks?queue=ventas")
    tasks = api("GET", f"/v1/customers/{ana}/tasks")
    one = api("GET", path)

    # Then it is there once, with what the workflow wrote
    assert queue.status == 200
    assert queue.body == {"tasks": [task.as_json()], "next_cursor": None}
    assert tasks.body == {"tasks": [task.as_json()]}
    assert one.status == 200
    assert one.body["id"].startswith("workflow:enr_")
    assert one.body["id"].endswith(":tarea_sin_respuesta")
    assert (one.body["kind"], one.body["queue"], one.body["status"]) == ("follow_up", "ventas", "open")
    assert one.body["title"] == "Lead sin respuesta tras descargar un documento"
    assert one.body["data"] == {"document_title": "Guía de crédito"}
    assert one.body["due_at"] == "2026-03-09T15:00:00Z"  # 3 days + 2 days of silence, then due in 2 days

    # When the agent closes it
    closed = api("POST", f"{path}/close", {"status": "done", "outcome": "Llamé; agendó una visita"})

    # Then it is done by them, and gone from the queue but not from the customer
    assert closed.status == 200
    assert (closed.body["status"], closed.body["closed_by"]) == ("done", "agent-7")
    assert closed.body["outcome"] == "Llamé; agendó una visita"
    assert closed.body["version"] == 2
    assert api("GET", "/v1/tasks?queue=ventas").body == {"tasks": [], "next_cursor": None}
    assert api("GET", f"/v1/customers/{ana}/tasks").body == {"tasks": [closed.body]}

    # And closing again the same way is the same answer; the other way, a conflict
    again = api("POST", f"{path}/close", {"status": "done"}, agent="agent-9")
    assert (again.status, again.body) == (200, closed.body)
    other = api("POST", f"{path}/close", {"status": "canceled"})
    assert other.status == 409
    assert other.body["error"] == "conflict"
    assert "already done" in other.body["message"]


def test_a_customers_enrolments_say_where_each_journey_stands(table: Table, api: Call) -> None:
    # Given a lead whose journey waits for three days, and another whose journey ended with the task
    ana, bea = a_customer(table), a_customer(table)
    story_3(table, ana, timers=0)
    story_3(table, bea, timers=2)

    # When an agent reads each customer's enrolments
    (waiting,) = api("GET", f"/v1/customers/{ana}/enrolments").body["enrolments"]
    (ended,) = api("GET", f"/v1/customers/{bea}/enrolments").body["enrolments"]

    # Then one waits at the first wait until its timer, having sent the e-mail
    assert waiting["id"].startswith("enr_")
    assert (waiting["workflow_id"], waiting["workflow_version"], waiting["status"]) == (STORY_3, 1, "waiting")
    assert waiting["current_step"] == "esperar_3_dias"
    assert waiting["waiting"] == {"step_id": "esperar_3_dias", "until": "2026-03-05T15:00:00Z", "event": None}
    assert (waiting["started_at"], waiting["ended_at"], waiting["outcome"]) == ("2026-03-02T15:00:00Z", None, None)
    assert [step["step_id"] for step in waiting["steps"]] == ["email_inicial", "esperar_3_dias"]
    assert waiting["steps"][0]["channel"] == "email"
    assert waiting["steps"][0]["message_id"] is not None
    assert set(waiting["steps"][0]) == {"step_id", "at", "status", "channel", "message_id", "outcome", "variant",
                                        "task_id"}  # fmt: skip
    # and the other ended handing the lead to ventas, its steps in the order they ran
    assert (ended["status"], ended["outcome"], ended["waiting"]) == ("exited", "tarea_ventas", None)
    assert ended["ended_at"] == "2026-03-07T15:00:00Z"
    assert [step["step_id"] for step in ended["steps"]] == [
        "email_inicial", "esperar_3_dias", "recordatorio_whatsapp", "esperar_2_dias", "segun_lectura",
        "tarea_sin_respuesta", "fin"]  # fmt: skip
    (task_step,) = [step for step in ended["steps"] if step["task_id"] is not None]
    assert task_step["step_id"] == "tarea_sin_respuesta"
    assert task_step["task_id"].endswith(":tarea_sin_respuesta")


def test_enrolments_are_listed_newest_first(table: Table, api: Call) -> None:
    ana = a_customer(table)
    store, flow = EnrolmentStore(table.name, table.dynamodb), shipped_workflows().get(STORY_3)
    first = enrol(flow, downloaded(ana), None, (), T0)
    assert isinstance(first, Enrolled)
    store.create(first.enrolment)
    store.save(first.enrolment.model_copy(update={"status": EnrolmentStatus.EXITED, "outcome": "replied",
                                                  "ended_at": T0, "version": 2}), expected_version=1)  # fmt: skip
    later = T0 + timedelta(days=31)
    second = enrol(flow, downloaded(ana, later), None, store.enrolments(ana), later)
    assert isinstance(second, Enrolled)
    store.create(second.enrolment)
    listed = api("GET", f"/v1/customers/{ana}/enrolments").body["enrolments"]
    assert [enrolment["id"] for enrolment in listed] == [second.enrolment.id, first.enrolment.id]


def test_a_queue_is_paged_and_a_task_id_with_a_hash_is_addressed_encoded(table: Table, api: Call) -> None:
    ana = a_customer(table)
    store = TaskStore(table.name, table.dynamodb)
    for n in range(3):
        store.create(Task(id=f"crm:lead#{n}", customer_id=ana, title=f"Llamar {n}", queue="ventas", source="crm",
                          created_at=T0 + timedelta(hours=n)))  # fmt: skip
    first = api("GET", "/v1/tasks?queue=ventas&limit=2")
    rest = api("GET", f"/v1/tasks?queue=ventas&limit=2&cursor={first.body['next_cursor']}")
    assert [task["id"] for task in first.body["tasks"] + rest.body["tasks"]] == [
        "crm:lead#0",
        "crm:lead#1",
        "crm:lead#2",
    ]
    assert rest.body["next_cursor"] is None
    path = f"/v1/customers/{ana}/tasks/{quote('crm:lead#1', safe='')}"
    assert api("GET", path).body["title"] == "Llamar 1"
    closed = api("POST", f"{path}/close", {"status": "canceled", "outcome": "  "}).body
    assert (closed["status"], closed["outcome"]) == ("canceled", None)
    assert [task["id"] for task in api("GET", "/v1/tasks?queue=ventas").body["tasks"]] == ["crm:lead#0", "crm:lead#2"]


def test_a_known_customer_with_nothing_yet_has_empty_lists(table: Table, api: Call) -> None:
    ana = a_customer(table)
    assert api("GET", f"/v1/customers/{ana}/tasks") == Answer(200, {"tasks": []})
    assert api("GET", f"/v1/customers/{ana}/enrolments") == Answer(200, {"enrolments": []})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error", "field"),
    [
        ("GET", "/v1/tasks", None, 400, "invalid_input", "queue"),
        ("GET", "/v1/tasks?limit=10", None, 400, "invalid_input", "queue"),
        ("GET", "/v1/tasks?queue=Ventas%20Norte", None, 400, "invalid_input", "queue"),
        ("GET", "/v1/tasks?queue=ventas&cursor=bm90LWEtY3Vyc29y", None, 400, "invalid_input", "cursor"),
        ("GET", "/v1/tasks?queue=ventas&limit=101", None, 400, "invalid_input", "limit"),
        ("GET", "/v1/customers/cus_nobody/tasks", None, 404, "not_found", None),
        ("GET", "/v1/customers/cus_nobody/enrolments", None, 404, "not_found", None),
        ("GET", "/v1/customers/{ana}/tasks/workflow:enr_1:nada", None, 404, "not_found", None),
        ("POST", "/v1/customers/{ana}/tasks/workflow:enr_1:nada/close", {"status": "done"}, 404, "not_found", None),
        ("POST", "/v1/customers/{ana}/tasks/t-1/close", {"status": "open"}, 422, "unprocessable", "status"),
        ("POST", "/v1/customers/{ana}/tasks/t-1/close", {"status": "done", "by": "x"}, 422, "unprocessable", "by"),
        ("POST", "/v1/customers/{ana}/tasks/t-1/close", {"status": "done", "outcome": "x" * 501}, 422,
         "unprocessable", "outcome"),
        ("POST", "/v1/customers/{ana}/tasks/t-1/close", "{not json", 400, "invalid_input", None),
    ],
)  # fmt: skip
def test_wrong_requests_get_the_error_that_says_why(
    table: Table, api: Call, method: str, path: str, body: Any, status: int, error: str, field: str | None
) -> None:
    ana = a_customer(table)
    TaskStore(table.name, table.dynamodb).create(Task(id="t-1", customer_id=ana, title="Llamar", queue="ventas",
                                                      source="crm", created_at=T0))  # fmt: skip
    answer = api(method, path.format(ana=ana), body)
    assert answer.status == status, answer.body
    assert answer.body["error"] == error
    if field is not None:
        assert field in [detail.get("field") for detail in answer.body.get("details", [])]
        assert field in answer.body["message"] or answer.body["message"] == "The request body is not valid."
    assert api("GET", "/v1/tasks?queue=ventas").body["tasks"][0]["status"] == "open"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tasks?queue=ventas"), ("GET", "/v1/customers/cus_x/tasks"), ("GET", "/v1/customers/cus_x/enrolments"),
     ("GET", "/v1/customers/cus_x/tasks/t-1"), ("POST", "/v1/customers/cus_x/tasks/t-1/close")],
)  # fmt: skip
def test_every_route_needs_a_verified_caller(api: Call, method: str, path: str) -> None:
    answer = api(method, path, {"status": "done"} if method == "POST" else None, agent=None)
    assert answer.status == 401
    assert answer.body["error"] == "unauthorized"


def test_the_customer_routes_do_not_pay_for_the_workflow_modules_at_import() -> None:
    import subprocess
    import sys

    code = "import sys, functions.agent_api.handler; print(any(m.startswith('shared.workflows') for m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "False"
