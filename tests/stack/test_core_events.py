"""``POST /v1/events`` over real HTTP on the local twin: a core system says a lead downloaded a document; Hilo
answers 202, creates the lead once (with the consents the person gave on the sender's form), puts the event on the
integration bus once, and refuses a wrong call with a JSON error naming what is wrong."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from hilo.local.stack import LocalStack, wait_until
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, http, poll_json, whatsapp_text

pytestmark = pytest.mark.stack

AUTH = {"authorization": f"Bearer {TEST_CONFIG['HILO_DEV_TOKEN']}"}
JSON = {"content-type": "application/json"}
EVENT_TYPE = "document.downloaded"
OPT_IN_EMAIL = {"channel": "email", "purpose": "marketing", "status": "opted_in"}


class BusListener:
    """A queue of this module's own behind a rule on IntegrationBus, as a company's CRM would subscribe: events are
    seen there without draining EventsQueue, which Hilo's own consumers read."""

    def __init__(self, stack: LocalStack) -> None:
        self.sqs, self.events = stack.client("sqs"), stack.client("events")
        self.name = f"core-events-test-{secrets.token_hex(4)}"
        self.bus = stack.physical_id("IntegrationBus")
        self.queue_url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.events.put_rule(Name=self.name, EventBusName=self.bus, EventPattern=json.dumps({"source": ["hilo"]}))
        self.events.put_targets(Rule=self.name, EventBusName=self.bus,
                                Targets=[{"Id": "test", "Arn": attributes["Attributes"]["QueueArn"]}])  # fmt: skip
        self.seen: list[dict[str, Any]] = []

    def wait_for(self, count: int = 1, **detail: Any) -> list[dict[str, Any]]:
        """The deliveries whose event (``detail``) has these fields, once ``count`` arrived (10 s at most)."""

        def arrived() -> list[dict[str, Any]]:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            return [body for body in self.seen if all(body["detail"].get(k) == v for k, v in detail.items())]

        wait_until(lambda: len(arrived()) >= count, timeout=10)
        return arrived()

    def close(self) -> None:
        self.events.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["test"])
        self.events.delete_rule(Name=self.name, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.queue_url)


@pytest.fixture(scope="module")
def bus(hilo_stack: LocalStack) -> Iterator[BusListener]:
    listener = BusListener(hilo_stack)
    yield listener
    listener.close()


def post_event(stack: LocalStack, body: Any, headers: dict[str, str] | None = None) -> HttpResult:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return http("POST", f"{stack.api_url}/v1/events", data, {**JSON, **AUTH} if headers is None else headers)


def a_lead_event(**fields: Any) -> dict[str, Any]:
    return {
        "id": f"web-{secrets.token_hex(6)}",
        "type": EVENT_TYPE,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "customer": {"email": f"Lead.{secrets.token_hex(4)}@Correo.co", "name": "Laura Gómez"},
        "data": {"document": "guia-credito.pdf", "page": "https://banco.example/guias"},
        **fields,
    }


def test_a_downloaded_document_makes_a_lead_and_reaches_the_bus_once(hilo_stack: LocalStack, bus: BusListener) -> None:
    # Given an e-mail Hilo has never seen
    body = a_lead_event()
    # When the web site's core system posts the event, then posts it again (its retry)
    first = post_event(hilo_stack, body)
    again = post_event(hilo_stack, body)
    # Then both are accepted, the second as a duplicate of the first
    assert first.status == 202, first.body
    accepted = first.json()
    assert set(accepted) == {"event_id", "customer_id", "duplicate"}
    assert accepted["duplicate"] is False
    assert again.status == 202, again.body
    assert again.json() == {**accepted, "duplicate": True}
    # And the event reached the integration bus (so EventsQueue too: the publisher sends there first), once
    (delivered,) = bus.wait_for(id=accepted["event_id"])
    assert delivered["detail-type"] == EVENT_TYPE
    event = delivered["detail"]
    assert (event["type"], event["source"], event["customer_id"]) == (EVENT_TYPE, "core.dev", accepted["customer_id"])
    assert event["data"] == body["data"]
    (created,) = bus.wait_for(type="customer.created", customer_id=accepted["customer_id"])
    assert created["detail"]["source"] == "hilo.events_api"
    # And an agent finds the lead by the e-mail, in any case
    email = quote(body["customer"]["email"].lower())
    card = poll_json(f"{hilo_stack.api_url}/v1/customers?email={email}", AUTH, lambda found: True)
    assert card["customer"]["id"] == accepted["customer_id"]
    assert card["customer"]["display_name"] == "Laura Gómez"
    assert card["current_conversation"] is None


def test_an_event_for_a_phone_in_the_default_region_finds_the_same_lead(hilo_stack: LocalStack) -> None:
    # The session's twin runs with HILO_DEFAULT_REGION=MX: a 10-digit national number is Mexican
    national = f"55{secrets.randbelow(10**8):08d}"
    first = post_event(hilo_stack, a_lead_event(customer={"phone": f"{national[:2]} {national[2:6]} {national[6:]}"}))
    second = post_event(hilo_stack, a_lead_event(customer={"phone": f"+52 1 {national}"}))
    assert (first.status, second.status) == (202, 202), (first.body, second.body)
    assert first.json()["customer_id"] == second.json()["customer_id"]
    assert first.json()["event_id"] != second.json()["event_id"]


def test_without_a_token_or_with_another_one_it_is_a_401(hilo_stack: LocalStack) -> None:
    # No token: API Gateway's JWT authorizer refuses it before any function runs (its own JSON)
    bare = post_event(hilo_stack, a_lead_event(), JSON)
    assert bare.status == 401, bare.body
    assert bare.json() == {"message": "Unauthorized"}
    # A token the twin does not accept: the function refuses it, naming the scheme
    wrong = post_event(hilo_stack, a_lead_event(), {**JSON, "authorization": "Bearer not-the-dev-token"})
    assert wrong.status == 401, wrong.body
    assert wrong.json()["error"] == "unauthorized"
    assert wrong.headers["www-authenticate"] == 'Bearer realm="hilo"'
    assert TEST_CONFIG["HILO_DEV_TOKEN"] not in wrong.body.decode()


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        (a_lead_event(type="message.received"), 422, "unprocessable", "type"),
        (a_lead_event(customer={"phone": "12"}), 422, "unprocessable", "customer.phone"),
        (a_lead_event(customer={"email": "a@b.co", "crm_id": "C-1"}), 422, "unprocessable", "customer"),
        (a_lead_event(occurred_at="2026-03-02T10:00:00"), 422, "unprocessable", "occurred_at"),
        (a_lead_event(data={"blob": "x" * 40_000}), 422, "unprocessable", "data"),
        (a_lead_event(data={"blob": "x" * 70_000}), 413, "payload_too_large", None),
        (
            a_lead_event(consents=[OPT_IN_EMAIL, {**OPT_IN_EMAIL, "channel": "fax"}]),
            422,
            "unprocessable",
            "consents.1.channel",
        ),
        (
            a_lead_event(consents=[OPT_IN_EMAIL, {**OPT_IN_EMAIL, "status": "opted_out"}]),
            422,
            "unprocessable",
            "consents.1.purpose",
        ),
        (
            a_lead_event(consents=[{**OPT_IN_EMAIL, "at": "2020-01-01T00:00:00Z"}]),
            422,
            "unprocessable",
            "consents.0.at",
        ),
        ('{"id": "x", ', 400, "invalid_input", None),
        ("", 400, "invalid_input", None),
    ],
)
def test_a_wrong_body_is_a_json_error_naming_what_is_wrong(
    hilo_stack: LocalStack, body: Any, status: int, error: str, field: str | None
) -> None:
    response = post_event(hilo_stack, body)
    assert response.status == status, response.body
    answer = response.json()
    assert answer["error"] == error
    if field is not None:
        assert field in [detail["field"] for detail in answer["details"]]


def test_an_event_from_the_future_of_the_twins_clock_is_a_422(hilo_stack: LocalStack) -> None:
    # Other tests move the twin's clock forward: "the future" is the twin's, as every function reads it
    twin_now = datetime.fromisoformat(http("GET", f"{hilo_stack.api_url}/_dev/clock").json()["now"])
    response = post_event(hilo_stack, a_lead_event(occurred_at=(twin_now + timedelta(hours=1)).isoformat()))
    assert response.status == 422, response.body
    assert response.json()["details"] == [{"field": "occurred_at"}]


def test_another_content_type_is_a_415_and_another_method_a_405(hilo_stack: LocalStack) -> None:
    form = post_event(hilo_stack, "id=1", {**AUTH, "content-type": "application/x-www-form-urlencoded"})
    assert form.status == 415, form.body
    listed = http("GET", f"{hilo_stack.api_url}/v1/events", headers=AUTH)
    assert listed.status == 405, listed.body
    assert listed.headers["allow"] == "POST"
    assert listed.json()["error"] == "method_not_allowed"


# ------------------------------------------------------------------------------------------ consents


def twin_now(stack: LocalStack) -> datetime:
    """The twin's clock, which other tests move forward: times are set by it, as every function reads it."""
    return datetime.fromisoformat(http("GET", f"{stack.api_url}/_dev/clock").json()["now"])


def card(stack: LocalStack, customer_id: str) -> dict[str, Any]:
    response = http("GET", f"{stack.api_url}/v1/customers/{customer_id}", headers=AUTH)
    assert response.status == 200, response.body
    found: dict[str, Any] = response.json()["customer"]
    return found


def test_a_lead_gets_its_forms_consents_once_and_they_are_announced_once(
    hilo_stack: LocalStack, bus: BusListener
) -> None:
    # Given a download form where the person ticked "acepto recibir comunicaciones" for e-mail and WhatsApp
    body = a_lead_event(occurred_at=(twin_now(hilo_stack) - timedelta(seconds=5)).isoformat(),
                        consents=[OPT_IN_EMAIL, {**OPT_IN_EMAIL, "channel": "whatsapp"}])  # fmt: skip
    # When the site posts it, then posts it again
    first = post_event(hilo_stack, body)
    assert first.status == 202, first.body
    customer_id = first.json()["customer_id"]
    version = card(hilo_stack, customer_id)["version"]
    again = post_event(hilo_stack, body)
    assert again.status == 202, again.body
    assert again.json()["duplicate"] is True
    # Then the agent's card shows both opt-ins, from the sender, at the event's time; the repeat wrote nothing
    shown = card(hilo_stack, customer_id)
    at = datetime.fromisoformat(body["occurred_at"])
    assert [(c["channel"], c["purpose"], c["status"], c["source"], datetime.fromisoformat(c["at"]))
            for c in shown["consents"]] == [("email", "marketing", "opted_in", "core.dev", at),
                                            ("whatsapp", "marketing", "opted_in", "core.dev", at)]  # fmt: skip
    assert shown["version"] == version
    # And each change reached the bus once, in ingest's shape
    changes = bus.wait_for(count=2, type="consent.changed", customer_id=customer_id)
    assert sorted((c["detail"]["data"]["channel"], c["detail"]["data"]["kind"]) for c in changes) == [
        ("email", "opt_in"),
        ("whatsapp", "opt_in"),
    ]
    assert all(c["detail"]["source"] == "hilo.events_api" for c in changes)


def test_an_older_events_opt_in_does_not_undo_a_whatsapp_baja(hilo_stack: LocalStack, bus: BusListener) -> None:
    # Given a customer who wrote BAJA on WhatsApp a minute ago (the twin runs in MX)
    national = f"55{secrets.randbelow(10**8):08d}"
    now = twin_now(hilo_stack)
    whatsapp_text(hilo_stack.api_url, TEST_CONFIG["HILO_META_APP_SECRET"], f"52{national}", "BAJA",
                  int((now - timedelta(minutes=1)).timestamp()))  # fmt: skip
    url = f"{hilo_stack.api_url}/v1/customers?phone={quote('+52' + national)}"
    opted_out = poll_json(url, AUTH, lambda found: found["customer"]["consents"])["customer"]
    # When the CRM posts, now, a form of an hour ago that opted in to WhatsApp and e-mail marketing
    body = a_lead_event(customer={"phone": national}, occurred_at=(now - timedelta(hours=1)).isoformat(),
                        consents=[{**OPT_IN_EMAIL, "channel": "whatsapp"}, OPT_IN_EMAIL])  # fmt: skip
    response = post_event(hilo_stack, body)
    # Then the event is the customer's, the BAJA stands, and only the e-mail opt-in, which it does not contradict,
    # is added and announced
    assert response.status == 202, response.body
    assert response.json()["customer_id"] == opted_out["id"]
    shown = card(hilo_stack, opted_out["id"])["consents"]
    assert {(c["channel"], c["purpose"]): (c["status"], c["source"]) for c in shown} == {
        ("whatsapp", "marketing"): ("opted_out", "keyword:BAJA"),
        ("email", "marketing"): ("opted_in", "core.dev"),
    }
    bus.wait_for(id=response.json()["event_id"])
    changes = [c["detail"] for c in bus.wait_for(count=2, type="consent.changed", customer_id=opted_out["id"])]
    assert sorted((c["source"], c["data"]["channel"], c["data"]["kind"]) for c in changes) == [
        ("hilo.events_api", "email", "opt_in"),
        ("hilo.ingest", "whatsapp", "opt_out"),
    ]
