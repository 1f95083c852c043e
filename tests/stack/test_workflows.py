"""Workflows end to end on the twin, with its clock moved days ahead: story 3's three paths (a reply after the
e-mail, a reply after the WhatsApp reminder, never a reply), an opt-out mid-flow, and a redelivered step.

Each test has a customer of its own who wrote on WhatsApp once and gave the agent their e-mail; the web site's core
system then posts ``document.downloaded`` with the consents the download form collected. What the customer sees is
read where it lands: SES (moto) for the e-mail, the fake Meta server for WhatsApp; what the company sees, through the
agent API: the enrolment, the timeline and the sales team's tasks.
"""

from __future__ import annotations

import email
import email.policy
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hilo.local.stack import ACCOUNT_ID, LocalStack, wait_until
from tests.conftest import TEST_CONFIG
from tests.helpers import http, whatsapp_text
from tests.stack.test_one_thread import agent, email_from, eventually, next_second, twin_now

pytestmark = pytest.mark.stack

STORY_3 = "documento_descargado"
DAY = 86_400


class Lead:
    """A customer of one test: their WhatsApp id, e-mail and customer id."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.wa_id = f"57310{secrets.randbelow(10**7):07d}"
        self.email = f"carolina.{secrets.token_hex(4)}@correo.co"
        whatsapp_text(stack.api_url, TEST_CONFIG["HILO_META_APP_SECRET"], self.wa_id, "Hola, info de créditos",
                      next_second(stack))  # fmt: skip
        card = eventually(stack, f"/v1/customers?phone=%2B{self.wa_id}", lambda body: body.get("customer"))
        self.id = card["customer"]["id"]
        linked = agent(stack, "POST", f"/v1/customers/{self.id}/identities", {"email": self.email})
        assert linked.status in (200, 201), linked.body

    def downloads(self, title: str = "Guía de crédito hipotecario") -> str:
        """The core system's event: the document, and the consents ticked on the download form."""
        at = datetime.fromtimestamp(twin_now(self.stack), UTC).isoformat()
        body = {"id": f"web-{secrets.token_hex(6)}", "type": "document.downloaded", "occurred_at": at,
                "customer": {"email": self.email},
                "consents": [{"channel": "email", "purpose": "marketing", "status": "opted_in"},
                             {"channel": "whatsapp", "purpose": "marketing", "status": "opted_in"}],
                "data": {"document_title": title}}  # fmt: skip
        posted = agent(self.stack, "POST", "/v1/events", body)
        assert posted.status == 202, posted.body
        return str(posted.json()["event_id"])

    def enrolment(self, done: Callable[[dict[str, Any]], Any] = lambda e: True) -> dict[str, Any]:
        """Their story-3 enrolment, once ``done`` holds for it."""

        def found(body: dict[str, Any]) -> Any:
            return [e for e in body["enrolments"] if e["workflow_id"] == STORY_3 and done(e)]

        body = eventually(self.stack, f"/v1/customers/{self.id}/enrolments", found)
        [enrolment] = found(body)
        return enrolment

    def email_texts(self) -> list[str]:
        """Each e-mail sent to them: its subject and plain text, decoded."""
        texts = []
        for mail in self.emails():
            message = email.message_from_string(mail.raw_data, policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            texts.append(f"{message['subject']}\n{body.get_content() if body else ''}")
        return texts

    def emails(self) -> list[Any]:
        from moto.ses.models import ses_backends

        sent = ses_backends[ACCOUNT_ID]["us-east-1"].sent_messages
        return [mail for mail in sent if self.email in getattr(mail, "destinations", [])]

    def whatsapps(self) -> list[Any]:
        fake = self.stack.fake_providers
        assert fake is not None
        return [request for request in fake.requests if request.to == self.wa_id]

    def writes_on_whatsapp(self, text: str) -> None:
        whatsapp_text(
            self.stack.api_url, TEST_CONFIG["HILO_META_APP_SECRET"], self.wa_id, text, next_second(self.stack)
        )

    def tasks(self) -> list[dict[str, Any]]:
        answer = agent(self.stack, "GET", f"/v1/customers/{self.id}/tasks")
        assert answer.status == 200, answer.body
        return list(answer.json()["tasks"])

    def timeline_steps(self) -> list[dict[str, Any]]:
        body = eventually(self.stack, f"/v1/customers/{self.id}/timeline?limit=100", lambda body: True)
        return [entry for entry in body["entries"] if entry["kind"] == "automation_step"]


def advance_clock(stack: LocalStack, seconds: int) -> None:
    moved = http("POST", f"{stack.api_url}/_dev/clock", json.dumps({"advance_seconds": seconds}))
    assert moved.status == 200, moved.body


def waiting_at(step: str) -> Callable[[dict[str, Any]], bool]:
    return lambda enrolment: enrolment["status"] == "waiting" and (enrolment["waiting"] or {}).get("step_id") == step


def step(enrolment: dict[str, Any], step_id: str) -> dict[str, Any]:
    [record] = [record for record in enrolment["steps"] if record["step_id"] == step_id]
    return record


def drained(stack: LocalStack, queue: str) -> bool:
    """Nothing waiting or in flight on the template's queue ``queue``."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    url = stack.physical_id(queue)
    found = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(found[name] == "0" for name in names)


def ended_with(outcome: str) -> Callable[[dict[str, Any]], bool]:
    return lambda enrolment: enrolment["status"] not in ("active", "waiting") and enrolment["outcome"] == outcome


def test_a_reply_to_the_email_ends_the_journey_before_the_whatsapp(hilo_stack: LocalStack) -> None:
    lead = Lead(hilo_stack)
    lead.downloads()
    # The e-mail goes at once, and the journey waits three days
    lead.enrolment(waiting_at("esperar_3_dias"))
    wait_until(lambda: lead.emails(), timeout=20)
    [mail] = lead.email_texts()
    assert "Guía de crédito hipotecario" in mail
    # The lead answers the e-mail the next day
    advance_clock(hilo_stack, DAY)
    email_from(hilo_stack, lead.email, next_second(hilo_stack), "Gracias, ¿me llaman mañana?")
    ended = lead.enrolment(ended_with("replied"))
    assert ended["status"] == "exited"
    # Three days on, nothing else reaches them: no WhatsApp, no task
    advance_clock(hilo_stack, 3 * DAY)
    assert lead.whatsapps() == []
    assert lead.tasks() == []
    assert len(lead.emails()) == 1


def test_a_reply_to_the_whatsapp_reminder_ends_the_journey_before_the_task(hilo_stack: LocalStack) -> None:
    lead = Lead(hilo_stack)
    lead.downloads()
    lead.enrolment(waiting_at("esperar_3_dias"))
    # Three days of silence: the WhatsApp reminder goes, as the approved template (the 24-hour window is closed)
    advance_clock(hilo_stack, 3 * DAY + 120)
    lead.enrolment(waiting_at("esperar_2_dias"))
    wait_until(lambda: lead.whatsapps(), timeout=20)
    [reminder] = lead.whatsapps()
    assert reminder.body["type"] == "template"
    # The lead answers it
    lead.writes_on_whatsapp("Sí, me interesa, llámenme")
    lead.enrolment(ended_with("replied"))
    advance_clock(hilo_stack, 2 * DAY + 120)
    assert lead.tasks() == []
    assert len(lead.whatsapps()) == 1


def test_silence_ends_in_a_task_for_sales_and_every_step_is_on_the_timeline(hilo_stack: LocalStack) -> None:
    lead = Lead(hilo_stack)
    lead.downloads()
    lead.enrolment(waiting_at("esperar_3_dias"))
    advance_clock(hilo_stack, 3 * DAY + 120)
    # The fake Meta server reports the reminder delivered and read, and the enrolment hears of it
    lead.enrolment(lambda e: waiting_at("esperar_2_dias")(e) and step(e, "recordatorio_whatsapp")["status"] == "read")
    advance_clock(hilo_stack, 2 * DAY + 120)
    ended = lead.enrolment(ended_with("tarea_ventas"))
    assert step(ended, "recordatorio_whatsapp")["status"] == "read"
    [task] = lead.tasks()
    assert (task["queue"], task["title"], task["status"]) == ("ventas", "Leyó el recordatorio y no respondió", "open")
    assert task["data"] == {"document_title": "Guía de crédito hipotecario"}
    queue = agent(hilo_stack, "GET", "/v1/tasks?queue=ventas&limit=100")
    assert task["id"] in [listed["id"] for listed in queue.json()["tasks"]]
    steps = [(entry["summary"], entry["actor"]) for entry in reversed(lead.timeline_steps())]
    assert [summary.split(" ")[0].rstrip(":") for summary, _ in steps] == [
        "sent", "waiting", "wait", "sent", "waiting", "wait", "branch", "task", "ended"
    ]  # fmt: skip
    assert {actor["kind"] for _, actor in steps} == {"workflow"}
    assert (len(lead.emails()), len(lead.whatsapps())) == (1, 1)


def test_baja_mid_flow_stops_everything(hilo_stack: LocalStack) -> None:
    lead = Lead(hilo_stack)
    lead.downloads()
    lead.enrolment(waiting_at("esperar_3_dias"))
    lead.writes_on_whatsapp("BAJA")
    ended = lead.enrolment(lambda e: e["status"] == "exited")
    assert ended["outcome"] in ("opted_out", "replied")
    advance_clock(hilo_stack, 6 * DAY)
    # Only the opt-out's own confirmation went to WhatsApp; no reminder, no task
    assert all(request.body.get("type") != "template" for request in lead.whatsapps())
    assert lead.tasks() == []


def test_a_redelivered_step_sends_once(hilo_stack: LocalStack) -> None:
    lead = Lead(hilo_stack)
    lead.downloads()
    enrolment = lead.enrolment(waiting_at("esperar_3_dias"))
    wait_until(lambda: lead.emails(), timeout=20)
    sqs, queue = hilo_stack.client("sqs"), hilo_stack.physical_id("WorkflowQueue")

    def redeliver(wake: dict[str, Any]) -> None:
        """The wake again, past SQS's five-minute deduplication (a new dedup id), as a late redelivery is."""
        body = {"schema_version": 1, "correlation_id": "redelivery-test", "enrolment_id": enrolment["id"],
                "workflow_id": STORY_3, "workflow_version": enrolment["workflow_version"], "customer_id": lead.id,
                "wake": wake}  # fmt: skip
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body), MessageGroupId=enrolment["id"],
                         MessageDeduplicationId=secrets.token_hex(8))  # fmt: skip

    # The start again: the e-mail step is not run twice
    redeliver({"kind": "start"})
    wait_until(lambda: drained(hilo_stack, "WorkflowQueue"), timeout=20)
    # The wait's timer fires; then its wake comes again
    advance_clock(hilo_stack, 3 * DAY + 120)
    lead.enrolment(waiting_at("esperar_2_dias"))
    wait_until(lambda: lead.whatsapps(), timeout=20)
    redeliver({"kind": "timer", "step_id": "esperar_3_dias", "due_at": enrolment["waiting"]["until"]})
    wait_until(lambda: drained(hilo_stack, "WorkflowQueue"), timeout=20)
    # One e-mail, one WhatsApp, one line per step: the repeats changed nothing
    assert lead.enrolment(waiting_at("esperar_2_dias"))["current_step"] == "esperar_2_dias"
    assert (len(lead.emails()), len(lead.whatsapps())) == (1, 1)
    summaries = [entry["summary"].split(" ")[0] for entry in reversed(lead.timeline_steps())]
    assert summaries == ["sent", "waiting", "wait", "sent", "waiting"]
