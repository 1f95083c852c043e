"""The agent API (HTTP API, behind the AgentJwt authorizer): find a customer by any identifier, their card, timeline
and conversations, a conversation by id; record an in-store visit or a note, link an identifier (201 created, 200
when an earlier request with the same idempotency key did it); merge two profiles, undo a merge, keep two apart
(202: recorded here, carried out by the merge function); send a message to a customer or reply in a conversation
(202: decided and queued, or deferred; 409 when the rules forbid it); a customer's tasks and workflow enrolments, a
queue's open tasks, and closing a task (409 when it was already closed the other way)."""

from __future__ import annotations

import functools
import json
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel, ValidationError

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.event_publisher import EventPublisher
from shared.adapters.outbound_queue import OutboundQueue
from shared.adapters.profile_store import ProfileStore
from shared.agent_writes import (
    IDEMPOTENCY_HEADER,
    AgentRequest,
    AgentWrites,
    IdentityBody,
    NoteBody,
    VisitBody,
    Written,
)
from shared.auth import authenticate
from shared.clock import now
from shared.customers import CustomerQueries, page_limit
from shared.errors import NotFound, Unprocessable
from shared.http import api_handler, create_app, parse_json_body, validation_details
from shared.identity.normaliser import Normaliser
from shared.merge_wiring import merges_from_environment
from shared.merging import MergeBody, MergeEvidence, Merges, NeverMergeBody, UnmergeBody, record_view
from shared.models.timeline import Actor, ActorKind
from shared.outbound.replies import AgentSends, SendAnswer, SendBody
from shared.outbound.wiring import outbound_from_environment

if TYPE_CHECKING:
    from shared.adapters.enrolment_store import EnrolmentStore
    from shared.adapters.task_store import TaskStore
    from shared.workflows.engine import Enrolment

app = create_app()
BodyT = TypeVar("BodyT", bound=BaseModel)


@dataclass(frozen=True)
class Ports:
    settings: SettingsLoader
    queries: CustomerQueries
    writes: AgentWrites
    merges: Merges
    sends: AgentSends


@functools.cache
def settings_loader() -> SettingsLoader:
    return SettingsLoader(os.environ)


@functools.cache
def ports() -> Ports:
    settings = settings_loader()
    config = settings.get()
    normaliser = Normaliser(config.default_region)
    store = ProfileStore(os.environ["PROFILE_TABLE_NAME"])
    publisher = EventPublisher(os.environ["EVENTS_QUEUE_URL"], os.environ["EVENT_BUS_NAME"])
    writes = AgentWrites(store, publisher, normaliser, now, reopen_window=timedelta(hours=config.reopen_window_hours))
    merges = merges_from_environment(os.environ, config)
    outbound = outbound_from_environment(os.environ, config)
    sends = AgentSends(store, outbound, OutboundQueue(os.environ["OUTBOUND_QUEUE_URL"]), now)
    return Ports(settings, CustomerQueries(store, normaliser), writes, merges, sends)


@dataclass(frozen=True)
class WorkStores:
    tasks: TaskStore
    enrolments: EnrolmentStore


@functools.cache
def work() -> WorkStores:
    """The task and enrolment stores, imported on first use: the workflow modules under them (the language's models)
    would add about 0.25 s to every cold start, and the customer and conversation routes do not need them."""
    from shared.adapters.enrolment_store import EnrolmentStore
    from shared.adapters.task_store import TaskStore

    table = os.environ["PROFILE_TABLE_NAME"]
    return WorkStores(TaskStore(table), EnrolmentStore(table))


def queries() -> CustomerQueries:
    """The read use cases, once the caller is known to be an agent (or a core system) with a verified token."""
    authenticate(app.current_event.raw_event, settings_loader().get())
    return ports().queries


def reader() -> WorkStores:
    """The task and enrolment reads, once the caller is known to have a verified token."""
    authenticate(app.current_event.raw_event, settings_loader().get())
    return work()


def agent() -> AgentRequest:
    """Who writes (the verified token's subject), under which idempotency key, in which request."""
    event = app.current_event
    principal = authenticate(event.raw_event, settings_loader().get())
    request_id = event.request_context.request_id or str(uuid.uuid4())
    return AgentRequest(principal.subject, request_id, (event.headers or {}).get(IDEMPOTENCY_HEADER))


def body(model: type[BodyT]) -> BodyT:
    """The JSON body: malformed JSON is a 400, a body that breaks the model's rules a 422 naming the fields."""
    try:
        return parse_json_body(app.current_event, model, max_bytes=64 * 1024)
    except ValidationError as error:
        raise Unprocessable("The request body is not valid.", details=validation_details(error)) from error


def json_response(status: int, payload: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False))  # fmt: skip


def answer(written: Written) -> Response[str]:
    return json_response(201 if written.created else 200, written.body)


def query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


@app.get("/v1/customers")
def find_customer() -> dict[str, Any]:
    return queries().find(query())


@app.get("/v1/customers/<customer_id>")
def customer_card(customer_id: str) -> dict[str, Any]:
    return queries().card(customer_id)


@app.get("/v1/customers/<customer_id>/timeline")
def customer_timeline(customer_id: str) -> dict[str, Any]:
    return queries().timeline(customer_id, query())


@app.get("/v1/customers/<customer_id>/conversations")
def customer_conversations(customer_id: str) -> dict[str, Any]:
    return queries().conversations(customer_id, query())


@app.get("/v1/conversations/<conversation_id>")
def conversation(conversation_id: str) -> dict[str, Any]:
    return queries().conversation(conversation_id)


@app.post("/v1/conversations/<conversation_id>/messages")
def reply(conversation_id: str) -> Response[str]:
    who = agent()
    return sent(ports().sends.reply(conversation_id, body(SendBody), who))


@app.post("/v1/customers/<customer_id>/messages")
def send_to_customer(customer_id: str) -> Response[str]:
    who = agent()
    return sent(ports().sends.send(customer_id, body(SendBody), who))


def sent(answer: SendAnswer) -> Response[str]:
    return json_response(answer.status, answer.body)


@app.post("/v1/customers/<customer_id>/visits")
def record_visit(customer_id: str) -> Response[str]:
    who = agent()
    return answer(ports().writes.record_visit(customer_id, body(VisitBody), who))


@app.post("/v1/customers/<customer_id>/notes")
def add_note(customer_id: str) -> Response[str]:
    who = agent()
    return answer(ports().writes.add_note(customer_id, body(NoteBody), who))


@app.post("/v1/customers/<customer_id>/identities")
def link_identity(customer_id: str) -> Response[str]:
    who = agent()
    return answer(ports().writes.link_identity(customer_id, body(IdentityBody), who))


@app.post("/v1/customers/<customer_id>/merge")
def merge(customer_id: str) -> Response[str]:
    actor = Actor(kind=ActorKind.AGENT, id=agent().agent_id)
    request = body(MergeBody)
    evidence = MergeEvidence(source="agent", actor=actor, reason=request.reason, at=now())
    return json_response(202, record_view(ports().merges.request(customer_id, request.other_customer_id, evidence)))


@app.post("/v1/customers/<customer_id>/unmerge")
def unmerge(customer_id: str) -> Response[str]:
    actor = Actor(kind=ActorKind.AGENT, id=agent().agent_id)
    request = body(UnmergeBody)
    record = ports().merges.unmerge(
        customer_id, request.merge_id, actor, reason=request.reason, never_merge=request.never_merge
    )
    return json_response(202, record_view(record))


@app.post("/v1/customers/<customer_id>/never-merge")
def never_merge(customer_id: str) -> dict[str, Any]:
    actor = Actor(kind=ActorKind.AGENT, id=agent().agent_id)
    request = body(NeverMergeBody)
    ports().merges.never_merge(customer_id, request.other_customer_id, actor, request.reason)
    return merge_history(customer_id)


@app.get("/v1/customers/<customer_id>/merges")
def merge_history(customer_id: str) -> dict[str, Any]:
    agent()
    return ports().merges.history(customer_id)


@app.get("/v1/customers/<customer_id>/tasks")
def customer_tasks(customer_id: str) -> dict[str, Any]:
    stores = reader()
    tasks = stores.tasks.for_customer(customer_id)
    if not tasks:
        known_customer(stores, customer_id)
    return {"tasks": [task.as_json() for task in tasks]}


@app.get("/v1/customers/<customer_id>/tasks/<task_id>")
def customer_task(customer_id: str, task_id: str) -> dict[str, Any]:
    # Task ids hold ':' and may hold '#' (sent as %23); the resolver hands path segments over still encoded.
    task = reader().tasks.get(customer_id, unquote(task_id))
    if task is None:
        raise NotFound("No such task.")
    return task.as_json()


@app.post("/v1/customers/<customer_id>/tasks/<task_id>/close")
def close_task(customer_id: str, task_id: str) -> dict[str, Any]:
    from shared.tasks import CloseTaskBody

    who = agent()
    request = body(CloseTaskBody)
    closed = work().tasks.close(customer_id, unquote(task_id), request.status, request.outcome, who.agent_id, now())
    return closed.as_json()


@app.get("/v1/tasks")
def queue_tasks() -> dict[str, Any]:
    from shared.tasks import queue_param

    stores, given = reader(), query()
    queue, limit = queue_param(given.get("queue")), page_limit(given.get("limit"))
    page = stores.tasks.open_in_queue(queue, limit=limit, cursor=given.get("cursor") or None)
    return {"tasks": [task.as_json() for task in page.tasks], "next_cursor": page.cursor}


@app.get("/v1/customers/<customer_id>/enrolments")
def customer_enrolments(customer_id: str) -> dict[str, Any]:
    stores = reader()
    found = stores.enrolments.enrolments(customer_id)
    if not found:
        known_customer(stores, customer_id)
    newest = sorted(found, key=lambda enrolment: (enrolment.started_at, enrolment.id), reverse=True)
    return {"enrolments": [enrolment_json(enrolment) for enrolment in newest]}


def known_customer(stores: WorkStores, customer_id: str) -> None:
    """An empty list is an answer for a customer, a 404 for an id nobody has."""
    if stores.tasks.get_card(customer_id) is None:
        raise NotFound("No such customer.")


_ENROLMENT_FIELDS = {"id", "workflow_id", "workflow_version", "status", "outcome", "error", "current_step", "variant",
                     "started_at", "updated_at", "ended_at"}  # fmt: skip
_STEP_FIELDS = {"at", "status", "channel", "message_id", "outcome", "variant", "task_id"}


def enrolment_json(enrolment: Enrolment) -> dict[str, Any]:
    """Where an enrolment stands and what each step did, in the order they ran. A wait's ending ``event`` and
    ``text`` (what the customer wrote) stay out: the timeline shows the messages themselves."""
    wait = enrolment.wait
    steps = sorted(enrolment.steps.items(), key=lambda item: item[1].at)
    return {
        **enrolment.model_dump(mode="json", include=_ENROLMENT_FIELDS),
        "waiting": wait.model_dump(mode="json", include={"step_id", "until", "event"}) if wait else None,
        "steps": [{"step_id": step, **record.model_dump(mode="json", include=_STEP_FIELDS)} for step, record in steps],
    }


# Registered last: the resolver tries dynamic routes in the order they were declared.
@app.post("/v1/customers/<customer_id>/<action>")
def other_action(customer_id: str, action: str) -> None:
    agent()
    raise NotFound(f"No route for POST /v1/customers/{{id}}/{action[:32]}.")


lambda_handler = api_handler(app)
