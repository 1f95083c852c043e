"""The workflow functions' use cases on their real adapters (moto): routing events to enrolments, running steps from
WorkflowQueue, and every effect landing once however often a step is delivered.

Each test drives the two functions as Lambda would (``running_support.Rig``): an event is routed, the messages it
queued on WorkflowQueue are woken, timers are fired by the twin's Scheduler; webhooks reach a real HTTP server on
127.0.0.1. What the company and the customer would see is read where it lands: OutboundQueue, Scheduler, the
timeline, the task queues, EventsQueue and the integration bus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.workflow_events import handler as events_handler
from functions.workflow_steps import handler as steps_handler
from shared.adapters.timers import timer_name
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel, IdPrefix, new_id
from shared.models.events import DomainEvent
from shared.models.outbound import dedup_id
from shared.models.timeline import ActorKind
from shared.outbound.catalog import shipped_catalog
from shared.tasks import TaskKind
from shared.workflows.catalog import UnknownWorkflow
from shared.workflows.engine import (
    Enrolled,
    EnrolmentStatus,
    Refusal,
    Start,
    StepWake,
    TimerFired,
    enrol,
)
from shared.workflows.language import ATTRIBUTE_CHANGED, load_workflow
from shared.workflows.router import Routed
from shared.workflows.steps import Outcome, Woken
from tests.fake_crm import Crm, running_crm
from tests.unit.workflows.conftest import Table
from tests.unit.workflows.running_support import (
    T0,
    BeforeEnrolling,
    EnrolmentSaves,
    LambdaContext,
    Person,
    Rig,
    lambda_record,
)

FOLLOW_UP = "seguimiento_cotizacion"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Crm]:
    yield from running_crm()


@pytest.fixture
def rig(table: Table, receiver: Crm) -> Rig:
    receiver.clear()
    return Rig(table, receiver)


# ------------------------------------------------------------------------------------------------ documents


def follow_up(webhook_url: str) -> dict[str, Any]:
    """A quote is requested: an e-mail at once; two days without a reply, a WhatsApp reminder, a task for sales, the
    CRM told by webhook and the bus told by an event. Any reply ends it."""
    quote_id = {"from": "event.data.quote_id"}
    return {
        "id": FOLLOW_UP,
        "version": 1,
        "name": "Seguimiento de cotización",
        "trigger": {"type": "event", "event": "quote.requested", "key": "event.data.quote_id",
                    "when": {"field": "event.data.amount", "gt": 0}},
        "exit_when": ["any_reply"],
        "reentry": "never",
        "steps": [
            {"id": "correo", "type": "send", "template": "documento_descargado", "channel": "email"},
            {"id": "esperar_2_dias", "type": "wait", "duration": "2d"},
            {"id": "recordatorio", "type": "send", "template": "documento_descargado", "channel": "whatsapp"},
            {"id": "tarea", "type": "create_task", "queue": "ventas", "title": "Cotización sin respuesta",
             "data": {"quote_id": quote_id}},
            {"id": "avisar_crm", "type": "notify",
             "webhook": {"url": webhook_url, "payload": {"quote_id": quote_id}}},
            {"id": "publicar", "type": "notify",
             "event": {"type": "quote.followed_up", "data": {"quote_id": quote_id}}},
        ],
    }  # fmt: skip


def journey(workflow_id: str, *steps: dict[str, Any], event: str = "quote.requested", **fields: Any) -> dict[str, Any]:
    """A workflow of a few steps that a ``quote.requested`` (or ``event``) starts."""
    return {"id": workflow_id, "version": 1, "name": workflow_id.replace("_", " ").capitalize(),
            "trigger": {"type": "event", "event": event}, "steps": list(steps), **fields}  # fmt: skip


def webhook_step(url: str) -> dict[str, Any]:
    payload = {"evento": "cotizacion", "quote_id": {"from": "event.data.quote_id"}}
    return {"id": "crm", "type": "notify", "webhook": {"url": url, "payload": payload}}


def quote(person: Person, quote_id: str | None = "Q-1", *, amount: int = 1_200_000,
          event: str = "quote.requested") -> DomainEvent:  # fmt: skip
    """The CRM's event (as ``POST /v1/events`` publishes it); the same arguments give the same event id."""
    data: dict[str, Any] = {"amount": amount, "document_title": "Cotización televisor 55"}
    if quote_id is not None:
        data["quote_id"] = quote_id
    return DomainEvent.new(event, source="crm", correlation_id=f"corr-{quote_id}", customer_id=person.id,
                           occurred_at=T0, data=data, id_seed=f"crm:{event}:{quote_id}:{amount}")  # fmt: skip


def key(enrolment_id: str, step_id: str) -> str:
    return f"workflow:{enrolment_id}:{step_id}"


def started(rig: Rig, document: dict[str, Any]) -> tuple[Person, str]:
    """The workflow loaded, a customer, and their enrolment by the trigger (its Start still on WorkflowQueue)."""
    rig.load(document)
    person = rig.customer()
    routed = rig.route(quote(person))
    [enrolment_id] = routed.started
    return person, enrolment_id


# ------------------------------------------------------------------------------------------------ routing


def test_a_trigger_enrols_once_and_the_same_event_again_queues_the_same_start(rig: Rig, table: Table) -> None:
    # Given
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()
    event = quote(ana)

    # When
    first = rig.route(event)

    # Then: one enrolment, and its Start on WorkflowQueue in the enrolment's group
    [enrolment] = rig.store.enrolments(ana.id, consistent=True)
    assert first == Routed(started=(enrolment.id,))
    assert (enrolment.workflow_id, enrolment.key, enrolment.trigger) == (FOLLOW_UP, "Q-1", event)
    [start] = rig.workflow_queue.take()
    assert StepWake.model_validate_json(start["Body"]) == StepWake.of(enrolment, Start())
    assert start["Attributes"]["MessageGroupId"] == enrolment.id

    # When: the events queue delivers the same event again
    again = rig.route(event)

    # Then: still one enrolment, and the very same Start again, which WorkflowQueue's dedup makes one message
    assert again.started == (enrolment.id,)
    assert rig.store.enrolments(ana.id, consistent=True) == (enrolment,)
    assert len(table.items("ENROLMENT")) == 1
    # (SQS drops it within its five minutes, as the twin's corrected moto does; plain moto keeps it: either way it is
    # the same message.)
    repeats = [message for message in rig.workflow_queue.take()
               if StepWake.model_validate_json(message["Body"]).wake == Start()]  # fmt: skip
    assert len(repeats) <= 1
    for repeat in repeats:
        assert repeat["Body"] == start["Body"]
        assert repeat["Attributes"]["MessageDeduplicationId"] == start["Attributes"]["MessageDeduplicationId"]


def test_an_event_that_does_not_fit_enrols_nobody_and_a_refusal_says_why(rig: Rig, table: Table) -> None:
    # Given
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()

    # When / Then: its condition does not hold (amount 0): nothing, and nothing to explain
    assert rig.route(quote(ana, amount=0)) == Routed()
    # When / Then: no quote id, which is the enrolment's key
    assert rig.route(quote(ana, quote_id=None)) == Routed(refused=((FOLLOW_UP, Refusal.NO_KEY),))
    # When / Then: a quote enrols; another request for the same quote while it runs is refused (re-entry)
    [enrolment_id] = rig.route(quote(ana, "Q-1")).started
    second = rig.route(quote(ana, "Q-1", amount=990_000))
    assert (second.started, second.refused) == ((), ((FOLLOW_UP, Refusal.REENTRY),))
    # And an event of a type no workflow takes concerns none
    assert rig.route(quote(ana, event="quote.viewed")) == Routed()
    assert [item["id"] for item in table.items("ENROLMENT")] == [enrolment_id]
    assert [wake.wake for wake in rig.wakes() if wake.wake == Start()] == [Start()]


def test_a_redelivery_racing_the_first_delivery_enrols_once_and_queues_one_start(rig: Rig, table: Table) -> None:
    # Given: the same trigger delivered twice at once: the other delivery enrols between this one's read and write
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()
    event = quote(ana)
    beside, raced = rig.router_beside(), []
    BeforeEnrolling(table, lambda: raced.append(beside.route(event)))

    # When
    routed = rig.route(event)

    # Then: the other delivery enrolled; this one's create was refused, the re-read found that enrolment, and its
    # Start went again, which WorkflowQueue's deduplication makes one message
    [enrolment] = rig.store.enrolments(ana.id, consistent=True)
    assert raced == [Routed(started=(enrolment.id,))]
    assert routed == Routed(started=(enrolment.id,))
    assert rig.wakes() == [StepWake.of(enrolment, Start())]


def test_a_second_trigger_racing_for_the_same_key_is_refused_as_reentry(rig: Rig, table: Table) -> None:
    # Given: two requests for the same quote at once; the other one enrols between this one's read and write
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()
    first, second = quote(ana, "Q-1"), quote(ana, "Q-1", amount=990_000)
    beside, raced = rig.router_beside(), []
    BeforeEnrolling(table, lambda: raced.append(beside.route(first)))

    # When
    routed = rig.route(second)

    # Then: the guard refused this one, and the re-read says why
    assert routed == Routed(refused=((FOLLOW_UP, Refusal.REENTRY),))
    [enrolment] = rig.store.enrolments(ana.id, consistent=True)
    assert raced == [Routed(started=(enrolment.id,))]
    assert enrolment.trigger == first
    assert rig.wakes() == [StepWake.of(enrolment, Start())]


# ------------------------------------------------------------------------------------------------ steps


def test_a_start_runs_to_the_first_wait(rig: Rig) -> None:
    # Given: enrolled at T0; the step function takes the Start a moment later
    ana, enrolment_id = started(rig, follow_up(rig.hook_url))
    rig.clock.advance(timedelta(seconds=2))

    # When
    [woken] = rig.run()

    # Then: it waits at the two days
    assert (woken.outcome, woken.status, woken.step) == (Outcome.ADVANCED, "waiting", "esperar_2_dias")
    assert woken.carried is not None
    assert dict(woken.carried.counts) == {"Send": 1, "Record": 2, "SetTimer": 1}
    enrolment = rig.enrolment(ana, FOLLOW_UP)
    assert (enrolment.status, enrolment.version) == (EnrolmentStatus.WAITING, 2)
    # And one e-mail command, keyed by the step, in the customer's order
    [(command, attributes)] = rig.outbound()
    assert command.key == key(enrolment_id, "correo")
    assert (command.customer_id, command.channel, command.requested_at) == (ana.id, Channel.EMAIL, T0)
    assert (command.actor.kind, command.actor.id) == (ActorKind.WORKFLOW, FOLLOW_UP)
    assert attributes["MessageGroupId"] == ana.id
    assert attributes["MessageDeduplicationId"] == dedup_id(command.key)
    # And one timer, two days after the start, that wakes this enrolment on WorkflowQueue
    [schedule] = rig.schedules()
    assert schedule["Name"] == timer_name(key(enrolment_id, "esperar_2_dias"))
    assert schedule["ScheduleExpression"] == "at(2026-03-04T15:00:00)"
    assert schedule["Target"]["Arn"] == rig.workflow_queue.arn
    assert schedule["Target"]["SqsParameters"] == {"MessageGroupId": enrolment_id}
    body = StepWake.model_validate_json(schedule["Target"]["Input"])
    assert body.wake == TimerFired(step_id="esperar_2_dias", due_at=T0 + timedelta(days=2))
    # And the timeline tells it, in order, as the workflow's doing
    assert rig.lines(ana) == [
        ("sent documento_descargado (email)", "correo", "send", "queued"),
        ("waiting until 2026-03-04T15:00:00+00:00", "esperar_2_dias", "wait", "waiting"),
    ]
    for item in rig.automation_items():
        assert (item["actor"]["kind"], item["actor"]["id"]) == ("workflow", FOLLOW_UP)
        assert (item["enrolment_id"], item["workflow_version"]) == (enrolment_id, 1)


def test_the_same_start_delivered_twice_runs_once(rig: Rig) -> None:
    # Given: the Start ran
    ana, _ = started(rig, follow_up(rig.hook_url))
    [start] = rig.wakes()
    rig.steps.wake(start)
    lines = rig.automation_items()

    # When: SQS delivers it again
    again = rig.steps.wake(start)

    # Then: nothing more happened
    assert again == Woken(Outcome.UNCHANGED, "waiting", "esperar_2_dias")
    assert len(rig.outbound()) == 1
    assert len(rig.schedules()) == 1
    assert rig.automation_items() == lines
    assert rig.enrolment(ana, FOLLOW_UP).version == 2


def test_a_run_whose_save_failed_after_its_effects_lands_them_once_when_redelivered(rig: Rig, table: Table) -> None:
    # Given: the save of the first run fails after its effects were carried out
    saves = EnrolmentSaves(table)
    saves.fail_next = 1
    ana, enrolment_id = started(rig, follow_up(rig.hook_url))
    [start] = rig.wakes()
    with pytest.raises(RetryableError):
        rig.steps.wake(start)
    assert rig.enrolment(ana, FOLLOW_UP).version == 1  # nothing saved
    lines = rig.automation_items()
    assert len(lines) == 2

    # When: SQS redelivers the Start after the visibility timeout
    rig.clock.advance(timedelta(minutes=3))
    woken = rig.steps.wake(start)

    # Then: the same effects again, each landing once; the enrolment moved on once
    assert (woken.outcome, woken.step) == (Outcome.ADVANCED, "esperar_2_dias")
    [(command, _)] = rig.outbound()
    assert command.key == key(enrolment_id, "correo")
    assert [schedule["Name"] for schedule in rig.schedules()] == [timer_name(key(enrolment_id, "esperar_2_dias"))]
    assert rig.automation_items() == lines
    assert rig.enrolment(ana, FOLLOW_UP).version == 2
    assert saves.attempts == 2


def test_an_enrolment_changed_by_another_writer_mid_run_is_reloaded_and_run_again(rig: Rig, table: Table) -> None:
    # Given: while the run carries out its effects, another writer saves the enrolment (a merge copying it)
    saves = EnrolmentSaves(table)
    saves.interfere_next = 1
    ana, _ = started(rig, follow_up(rig.hook_url))

    # When
    [woken] = rig.run()

    # Then: the save met a version it had not loaded, so the run reloaded and ran again; its effects landed once
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "waiting")
    assert saves.attempts == 2
    enrolment = rig.enrolment(ana, FOLLOW_UP)
    assert (enrolment.version, enrolment.status) == (3, EnrolmentStatus.WAITING)
    assert len(rig.outbound()) == 1
    assert len(rig.schedules()) == 1
    assert len(rig.lines(ana)) == 2


def test_an_enrolment_that_keeps_changing_is_left_to_sqs(rig: Rig, table: Table) -> None:
    # Given: every save of the run meets another writer's version
    saves = EnrolmentSaves(table)
    saves.interfere_next = 3
    started(rig, follow_up(rig.hook_url))
    [start] = rig.wakes()

    # When / Then
    with pytest.raises(RetryableError, match="kept changing"):
        rig.steps.wake(start)
    assert saves.attempts == 3
    assert len(rig.outbound()) == 1


def test_the_timer_runs_the_next_steps_and_a_stale_timer_changes_nothing(rig: Rig, table: Table) -> None:
    # Given: waiting since T0 for two days
    ana, enrolment_id = started(rig, follow_up(rig.hook_url))
    rig.run()
    rig.outbound()
    waiting = rig.enrolment(ana, FOLLOW_UP)
    items = table.items("ENROLMENT")

    # When: a timer of another instant arrives (a wait that no longer is)
    stale = rig.steps.wake(StepWake.of(waiting, TimerFired(step_id="esperar_2_dias", due_at=T0 + timedelta(days=1))))

    # Then: nothing changes
    assert stale.outcome == Outcome.UNCHANGED
    assert table.items("ENROLMENT") == items
    assert rig.outbound() == []
    assert len(rig.lines(ana)) == 2

    # When: the clock nears the due time, Scheduler has nothing to fire; at it, the timer arrives
    assert rig.fire_timers(timedelta(days=2) - timedelta(seconds=1)) == 0
    assert rig.fire_timers(timedelta(seconds=31)) == 1
    [timer] = rig.wakes()
    woken = rig.steps.wake(timer)

    # Then: the rest of the journey ran, from the timer's instant
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "completed")
    [(reminder, _)] = rig.outbound()
    assert (reminder.key, reminder.channel) == (key(enrolment_id, "recordatorio"), Channel.WHATSAPP)
    assert reminder.requested_at == T0 + timedelta(days=2)
    assert [line[0] for line in rig.lines(ana)[2:]] == [
        "wait esperar_2_dias ended (timeout)",
        "sent documento_descargado (whatsapp)",
        "task for ventas: Cotización sin respuesta",
        "webhook called",
        "event quote.followed_up published",
        "ended: completed",
    ]
    [task] = rig.queued_tasks("ventas")
    assert (task.id, task.data) == (key(enrolment_id, "tarea"), {"quote_id": "Q-1"})
    [call] = rig.receiver.received
    assert call.payload["quote_id"] == "Q-1"
    assert [event.type for event in rig.on_bus()] == ["quote.followed_up"]
    assert rig.schedules() == []  # Scheduler deleted the timer once it fired
    assert rig.enrolment(ana, FOLLOW_UP).version == 3
    # And the timer delivered again (Scheduler and SQS deliver at least once) does nothing
    assert rig.steps.wake(timer).outcome == Outcome.UNCHANGED
    assert rig.outbound() == []
    assert len(rig.receiver.received) == 1


# ------------------------------------------------------------------------------------------------ effects


GOLD_WELCOME = {
    "id": "bienvenida_oro",
    "version": 1,
    "name": "Bienvenida oro",
    "trigger": {"type": "profile_changed", "attribute": "segmento",
                "when": {"field": "event.data.new_value", "equals": "oro"}},
    "steps": [{"id": "llamar", "type": "create_task", "queue": "fidelizacion",
               "title": "Dar la bienvenida al segmento oro"}],
}  # fmt: skip


def attribute_changed(person: Person, new_value: str) -> DomainEvent:
    """``customer.attribute_changed`` as the workflow steps publish it (``effects.attribute_events``)."""
    data = {"attribute": "segmento", "old_value": None, "new_value": new_value, "source": "workflow:marcar_cliente"}
    return DomainEvent.new(ATTRIBUTE_CHANGED, source="hilo.workflows", correlation_id="corr-1", customer_id=person.id,
                           occurred_at=T0, data=data, id_seed=f"segmento:{new_value}")  # fmt: skip


def test_an_attribute_change_enrols_in_the_profile_changed_workflow_it_fits(rig: Rig) -> None:
    # Given: becoming gold starts a welcome
    rig.load(GOLD_WELCOME)
    ana = rig.customer()

    # When / Then: another value is no trigger
    assert rig.route(attribute_changed(ana, "plata")) == Routed()

    # When
    routed = rig.route(attribute_changed(ana, "oro"))

    # Then: enrolled, and the welcome runs
    [welcome_id] = routed.started
    assert rig.enrolment(ana, "bienvenida_oro").id == welcome_id
    rig.run()
    [task] = rig.queued_tasks("fidelizacion")
    assert (task.id, task.customer_id) == (key(welcome_id, "llamar"), ana.id)


def test_update_profile_sets_the_attribute_and_its_change_enrols_in_a_profile_changed_workflow(rig: Rig) -> None:
    # Given: a purchase marks the customer gold; becoming gold starts a welcome
    rig.load(journey("marcar_cliente", {"id": "marcar", "type": "update_profile", "set": {"segmento": "oro"}},
                     event="purchase.completed"))  # fmt: skip
    rig.load(GOLD_WELCOME)
    ana = rig.customer()
    rig.route(quote(ana, event="purchase.completed"))

    # When
    rig.run()

    # Then: the attribute is set, and one change is published on EventsQueue (and the bus)
    profile = rig.store.get_profile(ana.id)
    assert profile is not None
    assert profile.attributes == {"segmento": "oro"}
    [changed] = rig.published()
    assert (changed.type, changed.customer_id, changed.source) == ("customer.attribute_changed", ana.id,
                                                                  "hilo.workflows")  # fmt: skip
    assert changed.data == {"attribute": "segmento", "old_value": None, "new_value": "oro",
                            "source": "workflow:marcar_cliente"}  # fmt: skip
    assert [event.id for event in rig.on_bus()] == [changed.id]

    # When: the events function routes that change
    routed = rig.route(changed)

    # Then: the customer is enrolled in the welcome, which runs
    [welcome_id] = routed.started
    assert rig.enrolment(ana, "bienvenida_oro").id == welcome_id
    rig.run()
    [task] = rig.queued_tasks("fidelizacion")
    assert (task.id, task.customer_id) == (key(welcome_id, "llamar"), ana.id)


def test_create_task_makes_one_task_however_often_its_step_runs(rig: Rig, table: Table) -> None:
    # Given: a step that asks sales to call back, whose first run dies before its save
    saves = EnrolmentSaves(table)
    saves.fail_next = 1
    step = {"id": "llamar", "type": "create_task", "queue": "postventa", "title": "Llamar por la cotización",
            "due_in": "1d", "priority": "high", "data": {"quote_id": {"from": "event.data.quote_id"}}}  # fmt: skip
    ana, enrolment_id = started(rig, journey("tarea_postventa", step))
    [start] = rig.wakes()
    with pytest.raises(RetryableError):
        rig.steps.wake(start)

    # When: redelivered, and then delivered once more
    rig.clock.advance(timedelta(minutes=3))
    assert rig.steps.wake(start).outcome == Outcome.ADVANCED
    assert rig.steps.wake(start).outcome == Outcome.UNCHANGED

    # Then: one task in the queue's listing, its id the step's key
    [task] = rig.queued_tasks("postventa")
    assert task.id == key(enrolment_id, "llamar")
    assert (task.kind, task.customer_id, task.source) == (TaskKind.FOLLOW_UP, ana.id, "workflow:tarea_postventa")
    assert (task.title, str(task.priority), task.data) == ("Llamar por la cotización", "high", {"quote_id": "Q-1"})
    assert task.due_at == T0 + timedelta(days=1)
    assert len(table.items("TASK")) == 1


def test_a_handoff_makes_a_handoff_task_publishes_the_request_and_ends_the_enrolment(rig: Rig) -> None:
    # Given
    step = {"id": "asesor", "type": "handoff", "queue": "asesores", "reason": "Pidió hablar con una persona",
            "priority": "high"}  # fmt: skip
    ana, enrolment_id = started(rig, journey("pasar_a_asesor", step))

    # When
    [woken] = rig.run()

    # Then: a handoff task for the queue, the request published, the enrolment handed off
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "exited")
    [task] = rig.queued_tasks("asesores")
    assert (task.id, task.kind, task.title) == (key(enrolment_id, "asesor"), TaskKind.HANDOFF,
                                                "Pidió hablar con una persona")  # fmt: skip
    [requested] = rig.published()
    assert (requested.type, requested.customer_id) == ("conversation.handoff_requested", ana.id)
    assert requested.data == {"queue": "asesores", "reason": "Pidió hablar con una persona", "priority": "high",
                              "task_id": task.id, "workflow_id": "pasar_a_asesor",
                              "enrolment_id": enrolment_id}  # fmt: skip
    assert [event.id for event in rig.on_bus()] == [requested.id]
    enrolment = rig.enrolment(ana, "pasar_a_asesor")
    assert (enrolment.status, enrolment.outcome) == (EnrolmentStatus.EXITED, "handed_off")
    assert rig.lines(ana) == [
        ("handed to asesores", "asesor", "handoff", "handed_off"),
        ("ended: handed_off", None, "end", "handed_off"),
    ]


def test_a_webhook_gets_the_payload_with_the_steps_key_as_idempotency_key(rig: Rig) -> None:
    # Given
    ana, enrolment_id = started(rig, journey("avisar_crm", webhook_step(rig.hook_url)))

    # When
    [woken] = rig.run()

    # Then: one signed call, keyed by the step, with the enrolment's ids
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "completed")
    [call] = rig.receiver.received
    assert call.path == "/hooks/crm"
    assert call.headers["idempotency-key"] == key(enrolment_id, "crm")
    assert call.headers["x-hilo-signature"].startswith("v1=")
    assert call.payload == {"evento": "cotizacion", "quote_id": "Q-1", "workflow_id": "avisar_crm",
                            "workflow_version": 1, "enrolment_id": enrolment_id, "customer_id": ana.id,
                            "step_id": "crm"}  # fmt: skip


def test_a_refused_webhook_is_recorded_and_the_journey_goes_on(rig: Rig) -> None:
    # Given: the CRM answers 400
    task = {"id": "revisar", "type": "create_task", "queue": "integraciones", "title": "Revisar la cotización"}
    ana, enrolment_id = started(rig, journey("avisar_crm", webhook_step(rig.hook_url), task))
    rig.receiver.answer(400)

    # When
    [woken] = rig.run()

    # Then: called once, the refusal recorded, and the next step ran
    host = rig.receiver.host
    refusal = f"Webhook {host} refused the call (HTTP 400)."
    assert woken.carried is not None
    assert woken.carried.refused == (refusal,)
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "completed")
    assert len(rig.receiver.received) == 1
    assert [task.id for task in rig.queued_tasks("integraciones")] == [key(enrolment_id, "revisar")]
    refused = [(summary, kind) for summary, _step, kind, outcome in rig.lines(ana) if outcome == "refused"]
    assert refused == [(f"webhook refused: {refusal}", "notify")]


def test_the_refusal_line_sits_beside_its_notify_steps_line(rig: Rig) -> None:
    # Given: the CRM answers 400; the step function runs a minute after the enrolment began
    task = {"id": "revisar", "type": "create_task", "queue": "integraciones", "title": "Revisar la cotización"}
    ana, _ = started(rig, journey("avisar_crm", webhook_step(rig.hook_url), task))
    rig.receiver.answer(400)
    rig.clock.advance(timedelta(minutes=1))

    # When
    rig.run()

    # Then: the refusal is the notify step's, right after its line and before the next step's
    assert [(line[1], line[3]) for line in rig.lines(ana)] == [
        ("crm", "done"),
        ("crm", "refused"),
        ("revisar", "created"),
        (None, "completed"),
    ]


def test_a_webhook_that_is_down_fails_the_wake_and_the_redelivery_calls_once_more(rig: Rig, table: Table) -> None:
    # Given: the CRM answers 503 to every attempt of the first delivery
    ana, enrolment_id = started(rig, journey("avisar_crm", webhook_step(rig.hook_url)))
    [start] = rig.wakes()
    rig.receiver.answer(503, 503, 503)

    # When / Then: SQS's turn; nothing of the run is saved
    with pytest.raises(RetryableError, match="HTTP 503 after 3 attempt"):
        rig.steps.wake(start)
    assert len(rig.receiver.received) == 3
    enrolment = rig.enrolment(ana, "avisar_crm")
    assert (enrolment.version, enrolment.status) == (1, EnrolmentStatus.ACTIVE)
    assert rig.lines(ana) == []

    # When: the CRM is back and SQS redelivers the Start
    rig.clock.advance(timedelta(minutes=3))
    woken = rig.steps.wake(start)

    # Then: one successful call, with the same key as the failed ones
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "completed")
    assert [call.status for call in rig.receiver.received] == [503, 503, 503, 200]
    assert len(rig.receiver.succeeded()) == 1
    assert {call.headers["idempotency-key"] for call in rig.receiver.received} == {key(enrolment_id, "crm")}
    assert rig.enrolment(ana, "avisar_crm").version == 2


def test_a_bus_notify_publishes_an_event_whose_id_is_seeded_by_the_steps_key(rig: Rig) -> None:
    # Given
    step = {"id": "publicar", "type": "notify",
            "event": {"type": "quote.followed_up", "data": {"quote_id": {"from": "event.data.quote_id"}}}}  # fmt: skip
    ana, enrolment_id = started(rig, journey("publicar_cotizacion", step))

    # When
    rig.run()

    # Then: one event, on EventsQueue and on the bus, under an id the step's key seeds
    [published] = rig.published()
    assert [event.id for event in rig.on_bus()] == [published.id]
    assert published.id == new_id(IdPrefix.EVENT, at=published.occurred_at, seed=key(enrolment_id, "publicar"))
    assert (published.type, published.source, published.customer_id) == ("quote.followed_up", "hilo.workflows",
                                                                          ana.id)  # fmt: skip
    assert published.correlation_id == "corr-Q-1"  # the trigger's trace
    assert published.data == {"quote_id": "Q-1", "workflow_id": "publicar_cotizacion", "enrolment_id": enrolment_id}


def test_a_redelivered_bus_notify_publishes_the_same_event_id(rig: Rig, table: Table) -> None:
    # Given: the run published the event, then its save failed
    saves = EnrolmentSaves(table)
    saves.fail_next = 1
    step = {"id": "publicar", "type": "notify", "event": {"type": "quote.followed_up"}}
    started(rig, journey("publicar_cotizacion", step))
    [start] = rig.wakes()
    with pytest.raises(RetryableError):
        rig.steps.wake(start)

    # When: SQS redelivers the Start three minutes later
    rig.clock.advance(timedelta(minutes=3))
    rig.steps.wake(start)

    # Then: consumers see the same event twice, which they drop by its id
    assert len({event.id for event in rig.published()}) == 1


def test_a_reply_while_waiting_ends_the_enrolment_and_cancels_its_timer(rig: Rig) -> None:
    # Given: waiting for two days
    ana, enrolment_id = started(rig, follow_up(rig.hook_url))
    rig.run()
    rig.outbound()
    assert rig.schedule(key(enrolment_id, "esperar_2_dias")) is not None

    # When: a day later the customer writes on WhatsApp, ingest publishes it and the events function routes it
    rig.clock.advance(timedelta(days=1))
    rig.writes(ana, "Sí, me interesa la cotización")
    routed = rig.route_published()
    [woken] = rig.run()

    # Then: the exit rule ended the enrolment, and its timer is gone
    assert [r.woken for r in routed if r.woken] == [(enrolment_id,)]
    assert (woken.outcome, woken.status) == (Outcome.ADVANCED, "exited")
    enrolment = rig.enrolment(ana, FOLLOW_UP)
    assert (enrolment.status, enrolment.outcome) == (EnrolmentStatus.EXITED, "replied")
    assert rig.schedules() == []
    assert rig.lines(ana)[-1] == ("ended: replied", None, "end", "replied")
    # And the day the wait would have ended, nothing fires and nothing is sent
    assert rig.fire_timers(timedelta(days=1, minutes=1)) == 0
    assert rig.outbound() == []


def test_a_wake_for_an_unknown_enrolment_or_workflow_version(rig: Rig) -> None:
    # Given
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()
    nobody = StepWake(correlation_id="corr-x", enrolment_id=new_id(IdPrefix.ENROLMENT, at=T0, seed="ghost"),
                      workflow_id=FOLLOW_UP, workflow_version=1, customer_id=ana.id, wake=Start())  # fmt: skip

    # When / Then: no such enrolment (never created, or merged away)
    assert rig.steps.wake(nobody) == Woken(Outcome.UNKNOWN)

    # Given: an enrolment on a version nobody stored
    unknown = load_workflow({**follow_up(rig.hook_url), "version": 2}, templates=shipped_catalog())
    result = enrol(unknown, quote(ana), None, (), T0)
    assert isinstance(result, Enrolled)
    assert rig.store.create(result.enrolment)

    # When / Then: permanent, naming the workflow and version
    with pytest.raises(UnknownWorkflow, match=f"'{FOLLOW_UP}' has no version 2") as raised:
        rig.steps.wake(result.start)
    assert isinstance(raised.value, PermanentError)


# ------------------------------------------------------------------------------------------------ handlers


def failed(response: Any) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_the_events_function_fails_only_the_records_that_are_not_domain_events(rig: Rig) -> None:
    # Given: a trigger published as /v1/events publishes it, between two bodies that are not events
    rig.load(follow_up(rig.hook_url))
    ana = rig.customer()
    rig.publisher.publish([quote(ana)])
    [message] = rig.events_queue.take()
    records = [
        lambda_record(None, rig.events_queue, body="{not json"),
        lambda_record(message, rig.events_queue),
        lambda_record(None, rig.events_queue, body=json.dumps({"type": "quote.requested"})),
    ]

    # When
    response = events_handler.handle({"Records": records}, LambdaContext(), rig.router)

    # Then: the two fail, the event enrolled
    assert failed(response) == [records[0]["messageId"], records[2]["messageId"]]
    [start] = rig.wakes()
    assert start.wake == Start()
    assert rig.enrolment(ana, FOLLOW_UP).id == start.enrolment_id


def test_the_steps_function_fails_only_the_records_it_cannot_run(rig: Rig) -> None:
    # Given: a Start from WorkflowQueue, and beside it (each in a group of its own) a body that is not JSON, a domain
    # event, and the Start of an enrolment on a workflow version nobody knows
    ana, enrolment_id = started(rig, follow_up(rig.hook_url))
    [message] = rig.workflow_queue.take()
    unknown = load_workflow({**follow_up(rig.hook_url), "version": 2}, templates=shipped_catalog())
    orphan = enrol(unknown, quote(ana, "Q-2"), None, (), T0)
    assert isinstance(orphan, Enrolled)
    rig.store.create(orphan.enrolment)
    records = [
        lambda_record(None, rig.workflow_queue, body="{not json", group="g-1"),
        lambda_record(None, rig.workflow_queue, body=quote(ana).model_dump_json(), group="g-2"),
        lambda_record(None, rig.workflow_queue, body=orphan.start.model_dump_json(), group=orphan.enrolment.id),
        lambda_record(message, rig.workflow_queue),
    ]

    # When
    response = steps_handler.handle({"Records": records}, LambdaContext(), rig.steps)

    # Then: those three fail; the Start ran
    assert failed(response) == [record["messageId"] for record in records[:3]]
    enrolment = rig.store.get(ana.id, FOLLOW_UP, enrolment_id)
    assert enrolment is not None
    assert enrolment.status == EnrolmentStatus.WAITING
    assert [command.key for command, _ in rig.outbound()] == [key(enrolment_id, "correo")]
