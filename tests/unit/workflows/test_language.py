"""The workflow language: the shipped journeys, what invalid files are told, durations, and what conditions, waits,
splits, sends and exit rules mean when the engine asks."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidInput, NotFound
from shared.http import status_for
from shared.models.common import Channel, new_id
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.models.message import DeliveryStatus
from shared.models.outbound import Intent, Route, TemplateContent
from shared.outbound.catalog import MESSAGES_DIR, shipped_catalog
from shared.outbound.rendering import TEMPLATE_CHANNELS, RenderContext, load_template, render
from shared.workflows.catalog import WorkflowCatalog, shipped_workflows
from shared.workflows.language import (
    MAX_DURATION,
    BranchStep,
    EnrolmentInfo,
    Facts,
    Frequency,
    MissingData,
    Reply,
    SendStep,
    SplitStep,
    StepRecord,
    WaitOutcome,
    WaitStep,
    Workflow,
    WorkflowInvalid,
    format_duration,
    load_workflow,
    parse_duration,
)

WORKFLOWS_DIR = Path(__file__).resolve().parents[3] / "shared" / "catalog" / "workflows"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CUSTOMER = new_id("cus", at=NOW, seed="workflow-tests")

#: A trigger event for each shipped workflow, as its core system would post it.
SAMPLE_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "documento_descargado": (
        "document.downloaded",
        {"document_title": "Guía de crédito hipotecario", "document_type": "brochure"},
    ),
    "confirmacion_cita": (
        "appointment.booked",
        {"appointment_id": "A-77", "starts_at": "2026-03-07T20:00:00Z", "store": "Unicentro"},
    ),
    "producto_disponible": (
        "product.back_in_stock",
        {
            "sku": "CAM-123-M",
            "product_name": "Camisa Oxford",
            "size": "M",
            "url": "https://t.example/p/123",
            "stock": 4,
        },
    ),
    "satisfaccion_post_resolucion": ("conversation.resolved", {"conversation_id": "conv_1", "channel": "whatsapp"}),
}


def event(event_type: str, data: dict[str, Any] | None = None, *, at: datetime = NOW) -> DomainEvent:
    return DomainEvent.new(
        event_type, source="crm", correlation_id="corr-1", customer_id=CUSTOMER, occurred_at=at, data=data
    )


def message(text: str | None = None, *, at: datetime, button: tuple[str, str] | None = None) -> DomainEvent:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if button:
        parts.append({"type": "interactive_reply", "reply_id": button[0], "title": button[1], "kind": "button"})
    return event("message.received", {"direction": "inbound", "channel": "whatsapp", "parts": parts}, at=at)


def profile(**attributes: Any) -> CustomerProfile:
    return CustomerProfile(id=CUSTOMER, attributes=attributes, created_at=NOW, updated_at=NOW)


# ------------------------------------------------------------------------------------------ shipped workflows


def test_every_shipped_workflow_loads_against_the_shipped_templates() -> None:
    # Given / When
    catalog = shipped_workflows()

    # Then
    assert catalog.ids() == tuple(sorted(SAMPLE_EVENTS))
    assert {path.stem for path in WORKFLOWS_DIR.glob("*.yaml")} == set(SAMPLE_EVENTS)
    templates = set(shipped_catalog().ids())
    for workflow_id in catalog.ids():
        workflow = catalog.get(workflow_id)
        sends = [step for step in workflow.steps if isinstance(step, SendStep)]
        assert sends, workflow_id
        assert {step.template for step in sends} <= templates


def test_the_survey_template_is_a_valid_message_template() -> None:
    # Given
    data = yaml.safe_load((MESSAGES_DIR / "encuesta_satisfaccion.yaml").read_text(encoding="utf-8"))

    # When
    template = load_template(data)

    # Then
    assert template.id == "encuesta_satisfaccion"
    assert all(template.supports(channel) for channel in (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP))


@pytest.mark.parametrize("workflow_id", sorted(SAMPLE_EVENTS))
def test_every_send_of_a_shipped_workflow_renders_on_every_channel_it_may_take(workflow_id: str) -> None:
    # Given: the workflow's trigger, as its core system posts it
    workflow = shipped_workflows().get(workflow_id)
    event_type, data = SAMPLE_EVENTS[workflow_id]
    facts = Facts.of(event(event_type, data), profile=profile())
    assert workflow.triggered_by(facts) or workflow.trigger.type != "event"

    for step in workflow.steps:
        if not isinstance(step, SendStep):
            continue
        # When
        command = step.command(
            facts,
            workflow_id=workflow.id,
            enrolment_id="enr_1",
            customer_id=CUSTOMER,
            correlation_id="corr-1",
            requested_at=NOW,
        )
        # Then: the template renders wherever the command may go, with what the step gives it
        template = shipped_catalog().get(step.template)
        channels = [step.channel] if step.channel else [c for c in TEMPLATE_CHANNELS if template.supports(c)]
        assert isinstance(command.content, TemplateContent)
        context = RenderContext.of(event=command.content.event, vars=command.content.vars)
        for channel in channels:
            for locale in ("es", "en"):
                assert render(template, channel, locale, context).text or channel == Channel.WHATSAPP


@pytest.mark.parametrize("workflow_id", sorted(SAMPLE_EVENTS))
def test_a_shipped_workflow_survives_its_json_form(workflow_id: str) -> None:
    # Given
    workflow = shipped_workflows().get(workflow_id)

    # When: stored as JSON (the API and the engine's version records), then loaded again
    full = load_workflow(workflow.model_dump_json(), templates=shipped_catalog())
    lean = load_workflow(workflow.model_dump(mode="json", exclude_none=True))

    # Then
    assert full == workflow
    assert lean == workflow
    assert lean.fingerprint == workflow.fingerprint


def test_the_fingerprint_changes_with_the_meaning_only() -> None:
    # Given
    data = yaml.safe_load((WORKFLOWS_DIR / "documento_descargado.yaml").read_text(encoding="utf-8"))
    workflow = load_workflow(data)

    # When
    reordered = load_workflow(dict(reversed(list(data.items()))))
    changed = load_workflow({**data, "reentry": {"after": "31d"}})
    disabled = load_workflow({**data, "enabled": False})

    # Then
    assert reordered.fingerprint == workflow.fingerprint
    assert changed.fingerprint != workflow.fingerprint
    assert disabled.fingerprint == workflow.fingerprint  # on and off is not a new version


def test_the_catalog_refuses_a_file_not_named_after_its_workflow(tmp_path: Path) -> None:
    # Given
    source = (WORKFLOWS_DIR / "producto_disponible.yaml").read_text(encoding="utf-8")
    (tmp_path / "aviso_stock.yaml").write_text(source, encoding="utf-8")

    # When
    with pytest.raises(WorkflowInvalid) as excinfo:
        WorkflowCatalog.from_directory(tmp_path)

    # Then
    assert excinfo.value.message == (
        "aviso_stock.yaml: workflow 'producto_disponible': field id: must be 'aviso_stock', the name of its file"
    )
    assert excinfo.value.details == [
        {
            "workflow": "producto_disponible",
            "step": None,
            "field": "id",
            "message": "must be 'aviso_stock', the name of its file",
        }
    ]


def test_the_catalog_names_the_file_of_a_broken_workflow(tmp_path: Path) -> None:
    # Given
    source = (WORKFLOWS_DIR / "documento_descargado.yaml").read_text(encoding="utf-8")
    (tmp_path / "documento_descargado.yaml").write_text(source.replace("duration: 3d", "duration: 3 days"))
    (tmp_path / "roto.yaml").write_text("id: [roto", encoding="utf-8")

    # When / Then
    with pytest.raises(WorkflowInvalid, match=r"^documento_descargado\.yaml: workflow 'documento_descargado' step "):
        WorkflowCatalog.from_directory(tmp_path)
    (tmp_path / "documento_descargado.yaml").unlink()
    with pytest.raises(WorkflowInvalid, match=r"^roto\.yaml: not valid YAML"):
        WorkflowCatalog.from_directory(tmp_path)


def test_the_catalog_checks_sends_against_the_templates_it_is_given(tmp_path: Path) -> None:
    # Given: a workflow naming a template only another deployment has
    source = (WORKFLOWS_DIR / "producto_disponible.yaml").read_text(encoding="utf-8")
    (tmp_path / "producto_disponible.yaml").write_text(source.replace("template: producto_disponible", "template: x"))

    # When / Then
    assert WorkflowCatalog.from_directory(tmp_path).ids() == ("producto_disponible",)
    with pytest.raises(WorkflowInvalid, match=r"step 'aviso_mejor_canal': field send\.template: there is no message"):
        WorkflowCatalog.from_directory(tmp_path, templates=shipped_catalog())


def test_an_unknown_workflow_is_not_found() -> None:
    with pytest.raises(NotFound, match="No workflow 'nada' \\(known: confirmacion_cita, "):
        shipped_workflows().get("nada")


# ------------------------------------------------------------------------------------------ invalid documents


def valid() -> dict[str, Any]:
    return {
        "id": "seguimiento",
        "version": 1,
        "name": "Seguimiento",
        "trigger": {
            "type": "event",
            "event": "document.downloaded",
            "when": {"field": "event.data.document_type", "equals": "brochure"},
        },
        "exit_when": ["any_reply", "opt_out"],
        "steps": [
            {"id": "correo", "type": "send", "template": "documento_descargado", "channel": "email"},
            {"id": "recordatorio", "type": "wait", "duration": "3d"},
            {
                "id": "segun_lectura",
                "type": "branch",
                "cases": [{"when": {"field": "steps.correo.status", "in": ["read"]}, "next": "fin"}],
                "default": "tarea",
            },
            {"id": "tarea", "type": "create_task", "queue": "ventas", "title": "Llamar"},
            {"id": "fin", "type": "exit", "outcome": "listo"},
        ],
    }


def step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(item for item in doc["steps"] if item["id"] == step_id)


def when(doc: dict[str, Any]) -> dict[str, Any]:
    return step(doc, "segun_lectura")["cases"][0]


Mutation = Callable[[dict[str, Any]], Any]
INVALID: list[tuple[str, Mutation, str | None, str | None, str]] = [
    ("unknown step type", lambda d: step(d, "recordatorio").update(type="sleep"), "recordatorio", "type",
     r"unknown step type 'sleep'; a step is one of: send, wait, branch"),
    ("step without type", lambda d: step(d, "recordatorio").pop("type"), "recordatorio", "type", "needs a type"),
    ("duplicate step id", lambda d: d["steps"].append({"id": "fin", "type": "exit", "outcome": "otro"}), "fin", "id",
     "two steps have this id"),
    ("next to a missing step", lambda d: step(d, "recordatorio").update(next="nada"), "recordatorio", "wait.next",
     r"there is no step 'nada' \(steps: correo, recordatorio, segun_lectura, tarea, fin\)"),
    ("branch to a missing step", lambda d: when(d).update(next="nada"), "segun_lectura", "branch.cases.0.next",
     "there is no step 'nada'"),
    ("branch without default", lambda d: step(d, "segun_lectura").pop("default"), "segun_lectura", "branch.default",
     "required"),
    ("wait without duration or event", lambda d: step(d, "recordatorio").pop("duration"), "recordatorio", "wait",
     "one of duration, at, or until"),
    ("wait with two forms", lambda d: step(d, "recordatorio").update(until={"event": "message.received"}),
     "recordatorio", "wait", "this one has duration and until"),
    ("wait until an event without timeout",
     lambda d: d["steps"].__setitem__(1, {"id": "recordatorio", "type": "wait", "until": {"event": "message.read"}}),
     "recordatorio", "wait.timeout", "needs a timeout"),
    ("bad duration", lambda d: step(d, "recordatorio").update(duration="3 days"), "recordatorio", "wait.duration",
     r"'3 days' is not a duration; write it like 30s, 15m, 24h, 3d, 2w or 1d12h"),
    ("duration as a bare number", lambda d: step(d, "recordatorio").update(duration=3), "recordatorio",
     "wait.duration", "a duration is text"),
    ("wait longer than a year", lambda d: step(d, "recordatorio").update(duration="400d"), "recordatorio",
     "wait.duration", "longer than the 366 days"),
    ("if_past without at", lambda d: step(d, "recordatorio").update(if_past="fin"), "recordatorio", "wait.if_past",
     "goes with at"),
    ("at with before and after",
     lambda d: d["steps"].__setitem__(1, {"id": "recordatorio", "type": "wait",
                                          "at": {"from": "event.data.x", "before": "1h", "after": "1h"}}),
     "recordatorio", "wait.at", "before or after, not both"),
    ("unknown field", lambda d: step(d, "correo").update(colour="red"), "correo", "send.colour", "unknown field"),
    ("channel that carries no text", lambda d: step(d, "correo").update(channel="voice"), "correo", "send.channel",
     "carries no written messages"),
    ("channel and route", lambda d: step(d, "correo").update(route="best"), "correo", "send.route",
     "a channel or a route"),
    ("split weights not 100",
     lambda d: d["steps"].insert(1, {"id": "ab", "type": "split", "variants": [
         {"name": "a", "weight": 50, "next": "recordatorio"}, {"name": "b", "weight": 40, "next": "recordatorio"}]}),
     "ab", "split.variants", "add up to 90; they must add up to 100"),
    ("path outside the roots", lambda d: when(d)["when"].update(field="customer.tier"), "segun_lectura",
     "branch.cases.0.when.field", "a path starts with event, incoming, profile, enrolment or steps"),
    ("profile field that is not read", lambda d: when(d).update(when={"field": "profile.display_name", "exists": True}),
     "segun_lectura", "branch.cases.0.when.field", r"profile.attributes.<name>"),
    ("incoming outside an event filter",
     lambda d: when(d).update(when={"field": "incoming.data.x", "exists": True}), "segun_lectura",
     "branch.cases.0.when.field", r"incoming.\* is the event a wait, goal or exit rule is matching"),
    ("trigger reading a step", lambda d: d["trigger"]["when"].update(field="steps.correo.status"), None,
     "trigger.when.field", "a trigger reads only event.* and profile.*"),
    ("value read from an unknown root", lambda d: step(d, "correo").update(vars={"x": {"from": "cliente.nombre"}}),
     "correo", "send.vars.x.from", "a path starts with"),
    ("delivery status that does not exist", lambda d: when(d)["when"].update({"in": ["leido"]}), "segun_lectura",
     "branch.cases.0.when.in", "'leido' is never a step's status; it is one of canceled, delivered, failed"),
    ("step that never ran before", lambda d: when(d)["when"].update(field="steps.tarea.task_id"), "segun_lectura",
     "branch.cases.0.when.field", "step 'tarea' never runs before this one"),
    ("reply since a step that never ran before",
     lambda d: when(d).update(when={"replied": {"since": "tarea"}}), "segun_lectura",
     "branch.cases.0.when.replied.since", "step 'tarea' never runs before this one"),
    ("field a step does not record", lambda d: when(d)["when"].update(field="steps.recordatorio.status"),
     "segun_lectura", "branch.cases.0.when.field", "step 'recordatorio' is a wait step; it records at, not status"),
    ("condition with two forms", lambda d: when(d)["when"].update(all=[]), "segun_lectura", "branch.cases.0.when",
     "a condition has exactly one form: .*; this one has field and all"),
    ("comparison with two operators", lambda d: when(d)["when"].update(equals="read"), "segun_lectura",
     "branch.cases.0.when", "exactly one operator: .*; this one has equals, in"),
    ("YAML boolean as a reply", lambda d: when(d).update(when={"replied": {"text": ["si", False]}}),
     "segun_lectura", "branch.cases.0.when.replied.text.1", "put the word in quotes"),
    ("unreachable step", lambda d: d["steps"].append({"id": "huerfano", "type": "exit", "outcome": "x"}),
     "huerfano", None, r"no step leads here \(unreachable\)"),
    ("loop", lambda d: step(d, "tarea").update(next="correo"), "tarea", "create_task.next",
     "goes back to step 'correo', which leads here: a workflow cannot loop"),
    ("task for nobody", lambda d: step(d, "tarea").pop("queue"), "tarea", "create_task",
     "needs a queue, an assignee, or both"),
    ("webhook without https",
     lambda d: d["steps"].insert(4, {"id": "crm", "type": "notify", "webhook": {"url": "http://crm.example.com/h"}}),
     "crm", "notify.webhook.url", "must use https"),
    ("webhook with credentials",
     lambda d: d["steps"].insert(4, {"id": "crm", "type": "notify", "webhook": {"url": "https://u:p@crm.example.com"}}),
     "crm", "notify.webhook.url", "must not carry credentials"),
    ("notify with nothing to tell", lambda d: d["steps"].insert(4, {"id": "crm", "type": "notify"}), "crm", "notify",
     "a webhook or an event"),
    ("trigger waiting for a reply", lambda d: d["trigger"].update(when={"not": {"replied": {}}}), None,
     "trigger.when.not.replied", "no replies before an enrolment"),
    ("unknown trigger type", lambda d: d.update(trigger={"type": "cron"}), None, "trigger.type",
     "unknown trigger type 'cron'; a trigger is one of: event, intent, profile_changed, schedule"),
    ("bad event type", lambda d: d["trigger"].update(event="Documento"), None, "trigger.event",
     "dotted lower-case words"),
    ("schedule time read by YAML as a number",
     lambda d: d.update(trigger={"type": "schedule", "at": 1260, "audience": {"field": "profile.locale", "gt": 1}}),
     None, "trigger.at", r"write the time in quotes, e.g. '21:00'"),
    ("schedule audience reading the event",
     lambda d: d.update(trigger={"type": "schedule", "at": "09:00", "audience": {"field": "event.id", "exists": True}}),
     None, "trigger.audience.field", "a schedule's audience reads only profile"),
    ("unknown exit rule", lambda d: d["exit_when"].append("nunca"), None, "exit_when.2", "'nunca' is not an exit rule"),
    ("bad reentry", lambda d: d.update(reentry="sometimes"), None, "reentry", "'never' or 'always'"),
    ("frequency without a period", lambda d: d.update(frequency={"max": 2}), None, "frequency.per", "required"),
    ("workflow id with capitals", lambda d: d.update(id="Seguimiento"), None, "id", "is not a workflow id"),
    ("version zero", lambda d: d.update(version=0), None, "version", "greater than or equal to 1"),
    ("no steps", lambda d: d.update(steps=[]), None, "steps", "at least 1 item"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "step_id", "field", "reason"), [row[1:] for row in INVALID],
                         ids=[row[0] for row in INVALID])  # fmt: skip
def test_an_invalid_workflow_is_refused_naming_workflow_step_and_field(
    mutate: Mutation, step_id: str | None, field: str | None, reason: str
) -> None:
    # Given
    doc = valid()
    load_workflow(copy.deepcopy(doc), templates=shipped_catalog())  # the base is valid
    mutate(doc)
    workflow_id = doc["id"]

    # When
    with pytest.raises(WorkflowInvalid) as excinfo:
        load_workflow(doc, templates=shipped_catalog())

    # Then
    error = excinfo.value
    assert isinstance(error, InvalidInput)
    assert (error.code, status_for(error)) == ("workflow_invalid", 422)
    where = f"workflow {workflow_id!r}" + (f" step {step_id!r}" if step_id else "") + ": "
    expected = where + (f"field {field}: " if field else "")
    assert expected in error.message, error.message
    matching = [d for d in error.details if d["step"] == step_id and d["field"] == field]
    assert matching, error.details
    assert all(d["workflow"] == workflow_id for d in error.details)
    assert any(re.search(reason, d["message"]) for d in matching), matching


@pytest.mark.parametrize(
    ("mutate", "step_id", "field", "reason"),
    [
        (lambda d: step(d, "correo").update(template="documento"), "correo", "send.template",
         r"there is no message template 'documento' \(templates: cita_confirmada, documento_descargado"),
        (lambda d: step(d, "correo").update(channel="sms"), "correo", "send.channel",
         r"template 'documento_descargado' has no variant for sms \(it has: whatsapp, email\)"),
        (lambda d: step(d, "correo").update(urgent=True), "correo", "send.urgent",
         "is marketing, and a marketing message is never urgent"),
    ],
    ids=["template unknown", "channel without variant", "urgent marketing"],
)  # fmt: skip
def test_sends_are_checked_against_the_template_catalog_when_one_is_given(
    mutate: Mutation, step_id: str, field: str, reason: str
) -> None:
    # Given
    doc = valid()
    mutate(doc)
    load_workflow(copy.deepcopy(doc))  # without templates, nothing to hold it against

    # When
    with pytest.raises(WorkflowInvalid) as excinfo:
        load_workflow(doc, templates=shipped_catalog())

    # Then
    assert excinfo.value.message.startswith(f"workflow 'seguimiento' step {step_id!r}: field {field}: ")
    assert re.search(reason, excinfo.value.details[0]["message"])


def test_a_workflow_with_the_wrong_id_for_its_place_is_refused() -> None:
    with pytest.raises(
        WorkflowInvalid, match=r"^workflow 'seguimiento': field id: must be 'otro', the name of its file$"
    ):
        load_workflow(valid(), expected_id="otro")


def test_every_problem_of_a_kind_is_reported_at_once() -> None:
    # Given: two dangling targets
    doc = valid()
    step(doc, "recordatorio")["next"] = "nada"
    when(doc)["next"] = "tampoco"

    # When
    with pytest.raises(WorkflowInvalid) as excinfo:
        load_workflow(doc)

    # Then
    assert [(d["step"], d["field"]) for d in excinfo.value.details] == [
        ("recordatorio", "wait.next"),
        ("segun_lectura", "branch.cases.0.next"),
    ]
    assert "; workflow 'seguimiento' step 'segun_lectura': " in excinfo.value.message


def test_a_step_without_a_usable_id_is_named_by_its_place() -> None:
    doc = valid()
    doc["steps"][1] = {"type": "wait", "duration": "3 days"}
    with pytest.raises(WorkflowInvalid) as excinfo:
        load_workflow(doc)
    assert {(d["step"], d["field"]) for d in excinfo.value.details} == {("#2", "wait.id"), ("#2", "wait.duration")}


@pytest.mark.parametrize("source", ["{id: x", "[1, 2]", b"[]"])
def test_a_document_that_is_not_an_object_is_refused(source: str | bytes) -> None:
    with pytest.raises(WorkflowInvalid, match=r"not valid JSON|must be an object"):
        load_workflow(source)


def test_a_loop_through_the_implicit_order_blames_the_step_that_goes_back() -> None:
    # Given: fin is an exit, so make tarea (implicitly followed by fin) jump back to segun_lectura via recordatorio
    doc = valid()
    doc["steps"][4] = {"id": "fin", "type": "wait", "duration": "1d", "next": "recordatorio"}

    # When
    with pytest.raises(WorkflowInvalid) as excinfo:
        load_workflow(doc)

    # Then
    assert [(d["step"], d["field"]) for d in excinfo.value.details] == [("fin", "wait.next")]


def test_a_jump_back_that_does_not_loop_is_allowed() -> None:
    # Given: a branch jumps forward to a step that jumps back to an exit
    doc = valid()
    doc["steps"] = [
        {"id": "correo", "type": "send", "template": "documento_descargado", "channel": "email"},
        {"id": "decidir", "type": "branch", "cases": [{"when": {"replied": {}}, "next": "tarea"}], "default": "fin"},
        {"id": "fin", "type": "exit", "outcome": "listo"},
        {"id": "tarea", "type": "create_task", "queue": "ventas", "title": "Llamar", "next": "fin"},
    ]

    # When
    workflow = load_workflow(doc)

    # Then
    assert workflow.next_after("tarea") == "fin"


# ------------------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1d 12h", timedelta(days=1, hours=12)),
        (" 1h30m ", timedelta(hours=1, minutes=30)),
        ("90m", timedelta(minutes=90)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("366d", MAX_DURATION),
        ("52w", timedelta(weeks=52)),
    ],
)
def test_durations_people_write_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3 days", "not a duration"),
        ("3D", "not a duration"),
        ("1.5h", "not a duration"),
        ("12h1d", "not a duration"),  # units in order, largest first
        ("1d1d", "not a duration"),
        ("3", "not a duration"),
        ("", "not a duration"),
        ("P3D", "not a duration"),
        ("1mo", "not a duration"),
        ("0s", "longer than zero"),
        ("367d", "longer than the 366 days"),
        ("53w", "longer than the 366 days"),
    ],
)
def test_durations_that_are_not_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=14), "2w"),
        (timedelta(days=10), "10d"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=59), "59s"),
    ],
)
def test_durations_are_written_canonically(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=1, max_value=int(MAX_DURATION.total_seconds())))
def test_a_duration_reads_back_as_written(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text)) == text


# ------------------------------------------------------------------------------------------------ conditions


def holds(condition: dict[str, Any], facts: Facts) -> bool:
    doc = valid()
    when(doc)["when"] = condition
    branch = load_workflow(doc).step("segun_lectura")
    assert isinstance(branch, BranchStep)
    return branch.choose(facts) == "fin"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "event.data.document_type", "equals": "brochure"}, True),
        ({"field": "event.data.document_type", "equals": "manual"}, False),
        ({"field": "event.data.pages", "equals": 12}, True),
        ({"field": "event.data.pages", "equals": "12"}, False),  # types matter
        ({"field": "event.data.gratis", "equals": True}, True),
        ({"field": "event.data.uno", "equals": True}, False),  # 1 is not true
        ({"field": "event.data.falta", "equals": "x"}, False),
        ({"field": "event.data.falta", "not_equals": "x"}, True),
        ({"field": "event.data.nulo", "exists": False}, True),  # null counts as missing
        ({"field": "event.data.document_type", "in": ["brochure", "ficha"]}, True),
        ({"field": "event.data.falta", "not_in": ["brochure"]}, True),
        ({"field": "event.data.pages", "gt": 10}, True),
        ({"field": "event.data.pages", "lte": 11.5}, False),
        ({"field": "event.data.document_type", "gt": 1}, False),  # numbers only
        ({"field": "event.data.tags.1", "equals": "credito"}, True),
        ({"field": "event.data.tags", "contains": "credito"}, True),
        ({"field": "event.data.document_type", "contains": "roch"}, True),
        ({"field": "profile.attributes.tier", "in": ["gold"]}, True),
        ({"field": "profile.attributes.crm.segment", "equals": "pyme"}, True),
        ({"field": "profile.channels", "contains": "whatsapp"}, True),
        ({"field": "profile.locale", "equals": "es"}, True),
        ({"field": "enrolment.version", "equals": 3}, True),
        ({"field": "event.data.owner", "equals": {"from": "profile.attributes.tier"}}, True),
        ({"field": "event.data.owner", "equals": {"from": "profile.attributes.falta"}}, False),
        ({"field": "event.data.owner", "not_equals": {"from": "profile.attributes.falta"}}, True),
        ({"field": "steps.correo.status", "in": ["read"]}, True),
        ({"field": "steps.correo.channel", "equals": "email"}, True),
        ({"all": [{"field": "event.data.pages", "gt": 1}, {"field": "enrolment.id", "equals": "enr_1"}]}, True),
        ({"all": [{"field": "event.data.pages", "gt": 1}, {"field": "enrolment.id", "equals": "x"}]}, False),
        ({"any": [{"field": "event.data.pages", "gt": 100}, {"field": "enrolment.id", "equals": "enr_1"}]}, True),
        ({"not": {"field": "event.data.pages", "gt": 100}}, True),
    ],
)  # fmt: skip
def test_conditions_read_the_facts(condition: dict[str, Any], expected: bool) -> None:
    # Given
    data = {"document_type": "brochure", "pages": 12, "gratis": True, "uno": 1, "nulo": None, "owner": "gold",
            "tags": ["hogar", "credito"]}  # fmt: skip
    facts = Facts.of(
        event("document.downloaded", data),
        profile=profile(tier="gold", **{"crm.segment": "pyme"}),
        channels=[Channel.WHATSAPP, Channel.EMAIL],
        enrolment=EnrolmentInfo(id="enr_1", version=3, started_at=NOW),
        steps={"correo": StepRecord(at=NOW, status=DeliveryStatus.READ, channel=Channel.EMAIL)},
    )

    # When / Then
    assert holds(condition, facts) is expected


def test_replies_are_matched_after_the_step_named_whatever_their_accents_case_and_punctuation() -> None:
    # Given
    condition = {"replied": {"since": "correo", "text": ["Sí", 1], "button": ["confirmar"]}}
    sent = StepRecord(at=NOW, status=DeliveryStatus.SENT)
    later = NOW + timedelta(minutes=5)

    def facts(*replies: DomainEvent, ran: bool = True) -> Facts:
        found = [reply for reply in (Reply.from_event(event) for event in replies) if reply is not None]
        return Facts.of(event("document.downloaded"), steps={"correo": sent} if ran else {}, replies=found)

    # When / Then
    assert holds(condition, facts(message("¡SI!", at=later)))
    assert holds(condition, facts(message(" 1. ", at=later)))
    assert holds(condition, facts(message(at=later, button=("confirmar", "Confirmar"))))
    assert not holds(condition, facts(message("si", at=NOW - timedelta(minutes=1))))  # before the step
    assert not holds(condition, facts(message("sí, pero el martes", at=later)))
    assert not holds(condition, facts(message("si", at=later), ran=False))  # the step never ran
    assert holds({"replied": {}}, facts(message("hola", at=later)))
    assert not holds({"replied": {}}, facts())


def test_a_reply_is_read_from_a_message_received_event_only() -> None:
    # Given
    tapped = message("ok", at=NOW, button=("2", "Cambiar"))
    echo = event("message.received", {"direction": "outbound", "parts": [{"type": "text", "text": "x"}]})

    # When
    reply = Reply.from_event(tapped)

    # Then
    assert reply == Reply(at=NOW, text="ok\nCambiar", button="2", channel=Channel.WHATSAPP)
    assert Reply.from_event(echo) is None
    assert Reply.from_event(event("message.read")) is None


# ---------------------------------------------------------------------------------------- waits, splits, sends


def test_waits_end_after_their_duration_at_an_instant_from_the_data_or_at_their_timeout() -> None:
    # Given
    cita = shipped_workflows().get("confirmacion_cita")
    _, data = SAMPLE_EVENTS["confirmacion_cita"]
    facts = Facts.of(event("appointment.booked", data))
    starts_at = datetime(2026, 3, 7, 20, 0, tzinfo=UTC)
    reminder, answer = cita.step("esperar_recordatorio"), cita.step("esperar_respuesta")
    three_days = shipped_workflows().get("documento_descargado").step("esperar_3_dias")
    survey = shipped_workflows().get("satisfaccion_post_resolucion").step("esperar_respuesta")
    assert isinstance(reminder, WaitStep)
    assert isinstance(answer, WaitStep)
    assert isinstance(three_days, WaitStep)
    assert isinstance(survey, WaitStep)

    # When / Then
    assert three_days.due(NOW, facts) == NOW + timedelta(days=3)
    assert reminder.due(NOW, facts) == starts_at - timedelta(hours=24)
    assert reminder.if_past == "esperar_respuesta"
    assert answer.due(NOW, facts) == starts_at - timedelta(hours=2)
    assert survey.due(NOW, facts) == NOW + timedelta(days=2)
    assert answer.until is not None
    assert answer.until.met(Facts.of(event("x.y"), incoming=message("1", at=NOW)))
    assert not answer.until.met(Facts.of(event("x.y"), incoming=event("message.read")))


@pytest.mark.parametrize("starts_at", [None, "mañana", "2026-03-07T20:00:00", 1741377600])
def test_a_wait_for_a_time_the_data_does_not_give_fails_naming_the_path(starts_at: Any) -> None:
    # Given
    reminder = shipped_workflows().get("confirmacion_cita").step("esperar_recordatorio")
    assert isinstance(reminder, WaitStep)
    facts = Facts.of(event("appointment.booked", {"starts_at": starts_at}))

    # When / Then
    with pytest.raises(MissingData, match=r"^event\.data\.starts_at is missing or not an ISO-8601 time with an offset"):
        reminder.due(NOW, facts)


def test_a_split_picks_the_same_variant_for_an_enrolment_and_spreads_them_by_weight() -> None:
    # Given
    split = shipped_workflows().get("producto_disponible").step("canal")
    assert isinstance(split, SplitStep)
    heavy, light = (
        split.variants[0].model_copy(update={"weight": 90}),
        split.variants[1].model_copy(update={"weight": 10}),
    )
    lopsided = split.model_copy(update={"variants": (heavy, light)})

    # When
    picks = [split.choose(f"enr_{index}").name for index in range(2000)]
    lopsided_picks = [lopsided.choose(f"enr_{index}").name for index in range(2000)]

    # Then
    assert split.choose("enr_42") == split.choose("enr_42")
    assert 900 < picks.count("mejor_canal") < 1100
    assert 1700 < lopsided_picks.count("mejor_canal") < 1900


def test_a_send_step_becomes_the_outbound_command_of_the_one_outbound_path() -> None:
    # Given
    cita = shipped_workflows().get("confirmacion_cita")
    confirmation = cita.step("confirmacion")
    assert isinstance(confirmation, SendStep)
    _, data = SAMPLE_EVENTS["confirmacion_cita"]
    facts = Facts.of(event("appointment.booked", data))

    # When
    command = confirmation.command(
        facts, workflow_id=cita.id, enrolment_id="enr_1", customer_id=CUSTOMER, correlation_id="c", requested_at=NOW
    )
    again = confirmation.command(
        facts, workflow_id=cita.id, enrolment_id="enr_1", customer_id=CUSTOMER, correlation_id="c", requested_at=NOW
    )

    # Then
    assert command.key == "workflow:enr_1:confirmacion"
    assert command.message_id == again.message_id  # a redelivered step is one message
    assert (command.route, command.channel, command.intent) == (Route.BEST, None, Intent.CONFIRMATION)
    assert (command.actor.kind, command.actor.id) == ("workflow", "confirmacion_cita")
    assert command.content == TemplateContent(
        template_id="cita_confirmada", vars={"starts_at": "2026-03-07T20:00:00Z", "store": "Unicentro"}, event=data
    )
    explicit = shipped_workflows().get("documento_descargado").step("email_inicial")
    reply = shipped_workflows().get("satisfaccion_post_resolucion").step("encuesta")
    assert isinstance(explicit, SendStep)
    assert isinstance(reply, SendStep)
    kwargs: dict[str, Any] = {"workflow_id": "w", "enrolment_id": "e", "customer_id": CUSTOMER,
                              "correlation_id": "c", "requested_at": NOW}  # fmt: skip
    assert explicit.command(facts, **kwargs).route == Route.EXPLICIT
    assert explicit.command(facts, **kwargs).channel == Channel.EMAIL
    assert reply.command(facts, **kwargs).route == Route.REPLY


def test_a_value_missing_from_the_data_fails_the_step_unless_it_has_a_default() -> None:
    # Given
    doc = valid()
    step(doc, "correo")["vars"] = {"store": {"from": "event.data.store"}, "city": {"from": "event.data.city",
                                                                                   "default": "Bogotá"}}  # fmt: skip
    send = load_workflow(doc).step("correo")
    assert isinstance(send, SendStep)
    kwargs: dict[str, Any] = {"workflow_id": "w", "enrolment_id": "e", "customer_id": CUSTOMER,
                              "correlation_id": "c", "requested_at": NOW}  # fmt: skip

    # When / Then
    with pytest.raises(MissingData, match=r"^event\.data\.store is missing and has no default$"):
        send.command(Facts.of(event("document.downloaded", {})), **kwargs)
    command = send.command(Facts.of(event("document.downloaded", {"store": "Andino"})), **kwargs)
    assert isinstance(command.content, TemplateContent)
    assert command.content.vars == {"store": "Andino", "city": "Bogotá"}


# ---------------------------------------------------------------------------------------- enrolling and ending


def test_the_trigger_enrols_only_events_that_fit_its_filter() -> None:
    # Given
    workflow = shipped_workflows().get("producto_disponible")
    _, data = SAMPLE_EVENTS["producto_disponible"]

    # When / Then
    assert workflow.triggered_by(Facts.of(event("product.back_in_stock", data)))
    assert not workflow.triggered_by(Facts.of(event("product.back_in_stock", {**data, "stock": 0})))
    assert not workflow.triggered_by(Facts.of(event("product.discontinued", data)))
    assert workflow.trigger.type == "event"
    assert workflow.trigger.enrolment_key(Facts.of(event("product.back_in_stock", data))) == "CAM-123-M"
    with pytest.raises(MissingData, match=r"event\.data\.sku"):
        workflow.trigger.enrolment_key(Facts.of(event("product.back_in_stock", {})))


def trigger_workflow(trigger: dict[str, Any]) -> Workflow:
    return load_workflow({**valid(), "trigger": trigger})


def test_other_triggers_enrol_on_their_events() -> None:
    # Given
    intent = trigger_workflow({"type": "intent", "intent": "hablar_con_asesor", "keywords": ["asesor", "una persona"]})
    changed = trigger_workflow({"type": "profile_changed", "attribute": "tier",
                                "when": {"field": "event.data.new_value", "equals": "gold"}})  # fmt: skip
    scheduled = trigger_workflow({"type": "schedule", "at": "09:00", "days": ["mon"],
                                  "audience": {"field": "profile.attributes.cumple_hoy", "equals": True}})  # fmt: skip

    # When / Then
    assert intent.triggered_by(Facts.of(message("Quiero hablar con un ASESOR, por favor", at=NOW)))
    assert intent.triggered_by(Facts.of(message("¿Puedo hablar con una persona?", at=NOW)))
    assert not intent.triggered_by(Facts.of(message("asesoría de crédito", at=NOW)))  # whole words only
    assert intent.triggered_by(Facts.of(event("intent.detected", {"intent": "hablar_con_asesor"})))
    assert changed.triggered_by(
        Facts.of(event("customer.attribute_changed", {"attribute": "tier", "new_value": "gold"}))
    )
    assert not changed.triggered_by(
        Facts.of(event("customer.attribute_changed", {"attribute": "x", "new_value": "gold"}))
    )
    run = event("workflow.scheduled", {"workflow_id": "seguimiento", "scheduled_for": NOW.isoformat()})
    assert scheduled.triggered_by(Facts.of(run, profile=profile(cumple_hoy=True)))
    assert not scheduled.triggered_by(Facts.of(run, profile=profile()))
    other = event("workflow.scheduled", {"workflow_id": "otro"})
    assert not scheduled.triggered_by(Facts.of(other, profile=profile(cumple_hoy=True)))
    assert scheduled.model_dump(mode="json")["trigger"]["at"] == "09:00"


def test_the_goal_and_exit_rules_end_an_enrolment() -> None:
    # Given
    cita = shipped_workflows().get("confirmacion_cita")
    lead = shipped_workflows().get("documento_descargado")
    stock = shipped_workflows().get("producto_disponible")
    booked = event("appointment.booked", {"appointment_id": "A-77"})
    downloaded = event("document.downloaded", {"document_title": "Guía"})
    back = event("product.back_in_stock", {"sku": "CAM-123-M"})

    def ending(workflow: Workflow, trigger: DomainEvent, incoming: DomainEvent | None) -> str | None:
        return workflow.ending(Facts.of(trigger, incoming=incoming))

    # When / Then
    assert ending(lead, downloaded, message("gracias", at=NOW)) == "replied"
    assert ending(lead, downloaded, event("consent.changed", {"kind": "opt_out", "channel": "sms"})) == "opted_out"
    assert ending(lead, downloaded, event("consent.changed", {"kind": "opt_in"})) is None
    assert ending(lead, downloaded, event("lead.converted")) == "converted"
    assert ending(lead, downloaded, None) is None
    assert ending(cita, booked, event("appointment.canceled", {"appointment_id": "A-77"})) == "cancelada"
    assert ending(cita, booked, event("appointment.canceled", {"appointment_id": "A-78"})) is None
    assert ending(cita, booked, message("hola", at=NOW)) is None  # replies are answers here, not exits
    assert ending(stock, back, event("order.placed", {"sku": "CAM-123-M"})) == "converted"
    assert ending(stock, back, event("order.placed", {"sku": "OTRO"})) is None


def test_a_condition_exit_is_checked_before_every_step() -> None:
    # Given
    doc = {**valid(), "exit_when": [{"when": {"field": "profile.attributes.cliente", "equals": True},
                                     "outcome": "ya_es_cliente"}]}  # fmt: skip
    workflow = load_workflow(doc)
    downloaded = event("document.downloaded")

    # When / Then
    assert workflow.ending(Facts.of(downloaded, profile=profile(cliente=True))) == "ya_es_cliente"
    assert workflow.ending(Facts.of(downloaded, profile=profile(cliente=False))) is None


@pytest.mark.parametrize(
    ("reentry", "last", "active", "admitted"),
    [
        ("never", None, False, True),
        ("never", NOW - timedelta(days=400), False, False),
        ("never", None, True, False),
        ("always", NOW - timedelta(minutes=1), False, True),
        ("always", NOW - timedelta(minutes=1), True, False),
        ({"after": "30d"}, NOW - timedelta(days=29), False, False),
        ({"after": "30d"}, NOW - timedelta(days=30), False, True),
    ],
)
def test_reentry_decides_whether_a_customer_enrols_again(
    reentry: Any, last: datetime | None, active: bool, admitted: bool
) -> None:
    workflow = load_workflow({**valid(), "reentry": reentry})
    assert workflow.admits(last, active=active, now=NOW) is admitted


def test_the_frequency_cap_counts_enrolments_in_the_group_within_the_period() -> None:
    # Given
    cap = Frequency(max=2, per=timedelta(days=7), group="seguimiento_comercial")
    lead = shipped_workflows().get("documento_descargado")

    # When / Then
    assert cap.allows([NOW - timedelta(days=8), NOW - timedelta(days=1)], NOW)
    assert not cap.allows([NOW - timedelta(days=6), NOW - timedelta(days=1)], NOW)
    assert lead.frequency_group == "seguimiento_comercial"
    assert shipped_workflows().get("confirmacion_cita").frequency_group == "confirmacion_cita"


def test_the_steps_follow_each_other_as_written_unless_told_otherwise() -> None:
    # Given
    lead = shipped_workflows().get("documento_descargado")

    # When / Then
    assert lead.first.id == "email_inicial"
    assert lead.next_after("email_inicial") == "esperar_3_dias"
    assert lead.next_after("tarea_leyo") == "fin"
    assert lead.next_after("tarea_sin_respuesta") == "fin"
    with pytest.raises(ValueError, match="branch step"):
        lead.next_after("segun_lectura")
    assert shipped_workflows().get("producto_disponible").next_after("ventana_de_compra") is None


def test_a_branch_reads_the_delivery_status_and_the_wait_outcome() -> None:
    # Given
    lead = shipped_workflows().get("documento_descargado")
    branch = lead.step("segun_lectura")
    assert isinstance(branch, BranchStep)
    downloaded = event("document.downloaded", {"document_title": "Guía"})

    def after(status: DeliveryStatus | None) -> str:
        records = {"recordatorio_whatsapp": StepRecord(at=NOW, status=status)} if status else {}
        return branch.choose(Facts.of(downloaded, steps=records))

    # When / Then
    assert after(DeliveryStatus.READ) == "tarea_leyo"
    assert after(DeliveryStatus.DELIVERED) == "tarea_sin_respuesta"
    assert after(None) == "tarea_sin_respuesta"
    record = StepRecord(at=NOW, outcome=WaitOutcome.EVENT, text="5")
    assert Facts.of(downloaded, steps={"w": record}).lookup("steps.w.text") == "5"


def test_what_a_workflow_listens_to() -> None:
    listens = {workflow_id: shipped_workflows().get(workflow_id).listens_to for workflow_id in SAMPLE_EVENTS}
    assert listens["documento_descargado"] == {
        "document.downloaded", "lead.converted", "message.received", "consent.changed",
        "message.delivered", "message.read", "message.failed",
    }  # fmt: skip
    assert listens["confirmacion_cita"] == {
        "appointment.booked",
        "appointment.canceled",
        "consent.changed",
        "message.received",
    }


def test_the_json_form_names_fields_as_files_do() -> None:
    # Given
    cita = shipped_workflows().get("confirmacion_cita")

    # When
    dumped = json.loads(cita.model_dump_json(exclude_none=True))

    # Then: "from", "in", "not" as written, durations as text
    assert dumped["steps"][0]["vars"]["store"] == {"from": "event.data.store"}
    assert dumped["steps"][1]["at"] == {"from": "event.data.starts_at", "before": "1d"}
    assert dumped["exit_when"][1]["when"]["equals"] == {"from": "event.data.appointment_id"}


# ---------------------------------------------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "workflows.md"


def test_the_reference_shows_every_shipped_file_as_it_is() -> None:
    # Given
    docs = DOCS.read_text(encoding="utf-8")
    files = [*sorted(WORKFLOWS_DIR.glob("*.yaml")), MESSAGES_DIR / "encuesta_satisfaccion.yaml"]

    # When / Then
    for path in files:
        assert f"```yaml\n{path.read_text(encoding='utf-8')}```" in docs, path.name


def test_the_first_example_of_the_reference_is_a_valid_workflow() -> None:
    # Given
    docs = DOCS.read_text(encoding="utf-8")
    first = re.search(r"## A first workflow.*?```yaml\n(.*?)```", docs, re.DOTALL)
    assert first is not None

    # When
    workflow = load_workflow(yaml.safe_load(first.group(1)), templates=shipped_catalog())

    # Then
    assert [step.id for step in workflow.steps][-1] == "tarea_ventas"
