"""The agent API's writes over real HTTP on the local twin: a caller who typed their cédula in the IVR and wrote on
WhatsApp walks into a store; the clerk finds them by cédula, records the visit on the same case, adds a note and
links their e-mail. Repeats count once; every mistake gets a JSON error with its status."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from hilo.local import providers
from hilo.local.stack import LocalStack
from tests.conftest import ROOT, TEST_CONFIG, start_stack
from tests.helpers import HttpResult, http, poll_json, whatsapp_text

pytestmark = pytest.mark.stack

TOKEN = TEST_CONFIG["HILO_DEV_TOKEN"]
STORE_LINE = "+5716017000"


@pytest.fixture(scope="module")
def co_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real template.yaml read as a Colombian company would run it: plain IVR digits are a cédula there (the
    session's stack reads them as Mexican, where digits alone are no document)."""
    environ = {**TEST_CONFIG, "HILO_DEFAULT_REGION": "CO"}
    stack = start_stack(ROOT / "template.yaml", "hiloco", tmp_path_factory.mktemp("hiloco"), environ)
    yield stack
    stack.stop()


def agent(stack: LocalStack, method: str, path: str, body: Any = None, *, key: str | None = None) -> HttpResult:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    data = body if isinstance(body, str | None) else json.dumps(body)
    return http(method, f"{stack.api_url}{path}", data, headers)


def wait_for(stack: LocalStack, path: str, done: Any, timeout: float = 20.0) -> Any:
    return poll_json(f"{stack.api_url}{path}", {"authorization": f"Bearer {TOKEN}"}, done, timeout)


def call_with_ivr(stack: LocalStack, phone: str, digits: str | None = None) -> None:
    """A signed Twilio Voice call, and (when given) the ID digits the caller typed in the IVR's Gather."""
    call = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32, "From": phone,
            "To": STORE_LINE, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}  # fmt: skip
    steps = [("/webhooks/twilio/voice", call)]
    if digits is not None:
        steps.append(("/webhooks/twilio/voice?step=id", {**call, "CallStatus": "in-progress", "Digits": digits}))
    for path, params in steps:
        url = f"{stack.api_url}{path}"
        body, headers = providers.twilio_form(url, params, TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"])
        assert http("POST", url, body, headers).status == 200


def a_caller(stack: LocalStack) -> tuple[str, str]:
    """A customer made by a call: (their phone, their customer id)."""
    phone = f"+57300{secrets.randbelow(10**7):07d}"
    call_with_ivr(stack, phone)
    card = wait_for(stack, f"/v1/customers?phone={quote(phone)}", lambda body: True)
    return phone, card["customer"]["id"]


def test_the_clerk_finds_the_caller_by_cedula_and_the_visit_continues_their_case(co_stack: LocalStack) -> None:
    # Given a customer who called, typed their cédula in the IVR, then wrote on WhatsApp
    phone, cedula = f"+57300{secrets.randbelow(10**7):07d}", f"10{secrets.randbelow(10**8):08d}"
    call_with_ivr(co_stack, phone, cedula)
    time.sleep(1.1)  # WhatsApp's timestamp has whole seconds: let it fall after the call
    whatsapp_text(
        co_stack.api_url,
        TEST_CONFIG["HILO_META_APP_SECRET"],
        phone.lstrip("+"),
        "Les mando la foto del televisor roto",
        int(time.time()),
    )
    # When a clerk types the cédula, dotted as it is printed on the card
    dotted = f"{cedula[:1]}.{cedula[1:4]}.{cedula[4:7]}.{cedula[7:]}"
    both = ["voice", "whatsapp"]
    card = wait_for(co_stack, f"/v1/customers?national_id={dotted}",
                    lambda body: (body["current_conversation"] or {}).get("channels") == both)  # fmt: skip
    customer_id, case = card["customer"]["id"], card["current_conversation"]["id"]
    assert any(identity["kind"] == "national_id" for identity in card["customer"]["identities"])
    # And records the visit
    key = str(uuid.uuid4())
    visit = {"store": "Unicentro 12", "summary": "Cambio del televisor; cita el sábado"}
    first = agent(co_stack, "POST", f"/v1/customers/{customer_id}/visits", visit, key=key)
    # Then it is on the same case, after the call and the WhatsApp message, and the case is now in store too
    assert first.status == 201, first.body
    entry = first.json()
    assert (entry["conversation_id"], entry["kind"], entry["channel"]) == (case, "visit", "in_store")
    assert (entry["store"], entry["summary"]) == ("Unicentro 12", visit["summary"])
    assert entry["actor"] == {"kind": "agent", "id": "dev"}
    timeline = agent(co_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["entries"]
    assert [line["channel"] for line in timeline] == ["in_store", "whatsapp", "voice", "voice"]  # newest first
    assert {line["conversation_id"] for line in timeline} == {case}
    assert timeline[0]["store"] == "Unicentro 12"
    card = agent(co_stack, "GET", f"/v1/customers/{customer_id}").json()
    assert card["current_conversation"]["channels"] == ["in_store", "voice", "whatsapp"]
    # When the tablet sends the same visit again (the key in the body this time)
    again = agent(co_stack, "POST", f"/v1/customers/{customer_id}/visits", {**visit, "id": key})
    # Then 200 with the same entry, and still one visit on the timeline
    assert again.status == 200, again.body
    assert again.json() == entry
    timeline = agent(co_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["entries"]
    assert [line["kind"] for line in timeline].count("visit") == 1
    # When an agent adds a call note afterwards
    note = {"text": "Confirmó la cita del sábado por teléfono.", "channel": "voice"}
    noted = agent(co_stack, "POST", f"/v1/customers/{customer_id}/notes", note, key=str(uuid.uuid4()))
    # Then it is on the case, with its text, and the case did not move
    assert noted.status == 201, noted.body
    assert (noted.json()["conversation_id"], noted.json()["text"]) == (case, note["text"])
    latest = agent(co_stack, "GET", f"/v1/customers/{customer_id}").json()["current_conversation"]
    assert latest["last_channel"] == "in_store"
    assert agent(co_stack, "GET", f"/v1/customers/{customer_id}/timeline?limit=1").json()["entries"][0]["kind"] == (
        "note"
    )


def test_an_email_an_agent_links_finds_the_customer(co_stack: LocalStack) -> None:
    # Given a caller
    _, customer_id = a_caller(co_stack)
    email = f"ana.{secrets.token_hex(4)}@correo.co"
    # When the agent links the e-mail they gave on the phone
    linked = agent(co_stack, "POST", f"/v1/customers/{customer_id}/identities", {"email": email.upper()})
    # Then it is theirs, and finds them
    assert linked.status == 201, linked.body
    assert linked.json()["identity"]["value"] == email
    found = agent(co_stack, "GET", f"/v1/customers?email={quote(email)}")
    assert found.status == 200
    assert found.json()["customer"]["id"] == customer_id
    # And linking it again is a 200
    assert agent(co_stack, "POST", f"/v1/customers/{customer_id}/identities", {"email": email}).status == 200


def test_an_identifier_of_another_customer_is_a_409_naming_them(co_stack: LocalStack) -> None:
    phone, theirs = a_caller(co_stack)
    _, mine = a_caller(co_stack)
    response = agent(co_stack, "POST", f"/v1/customers/{mine}/identities", {"phone": phone})
    assert response.status == 409, response.body
    error = response.json()
    assert error["error"] == "conflict"
    assert error["details"][0]["other_customer_id"] == theirs
    assert f"/v1/customers/{mine}/merge" in error["message"]
    assert phone not in response.body.decode()


@pytest.fixture(scope="module")
def someone(co_stack: LocalStack) -> str:
    return a_caller(co_stack)[1]


VISIT = {"store": "Unicentro 12", "summary": "Cambio"}


@pytest.mark.parametrize(
    ("action", "body", "key", "status", "error", "fields"),
    [
        ("visits", "{not json", "k", 400, "invalid_input", None),
        ("visits", VISIT, None, 400, "invalid_input", ["Idempotency-Key", "id"]),
        ("visits", {"store": "Unicentro 12"}, "k", 422, "unprocessable", ["summary"]),
        ("visits", {**VISIT, "sumary": "typo"}, "k", 422, "unprocessable", ["sumary"]),
        ("visits", {**VISIT, "summary": "x" * 501}, "k", 422, "unprocessable", ["summary"]),
        ("visits", {**VISIT, "occurred_at": "2026-03-02T10:00:00"}, "k", 422, "unprocessable", ["occurred_at"]),
        ("visits", {**VISIT, "occurred_at": "2999-01-01T00:00:00Z"}, "k-future", 422, "unprocessable",
         ["occurred_at"]),
        ("notes", {"text": ""}, "k", 422, "unprocessable", ["text"]),
        ("notes", {"text": "x", "conversation_id": "conv_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}, "k-conv", 422,
         "unprocessable", ["conversation_id"]),
        ("identities", {"email": "nadie"}, None, 422, "unprocessable", ["email"]),
        ("identities", {"phone": "+573001234567", "email": "a@b.co"}, None, 422, "unprocessable",
         ["phone", "email"]),
        ("identities", {"national_id": "1234567890", "country": "CL", "document_type": "RUT"}, None, 422,
         "unprocessable", ["national_id"]),
        ("frobnicate", {}, None, 404, "not_found", None),
    ],
)  # fmt: skip
def test_mistakes_get_a_json_error_naming_the_fields(
    co_stack: LocalStack,
    someone: str,
    action: str,
    body: Any,
    key: str | None,
    status: int,
    error: str,
    fields: list[str] | None,
) -> None:
    response = agent(co_stack, "POST", f"/v1/customers/{someone}/{action}", body, key=key)
    assert response.status == status, response.body
    assert response.json()["error"] == error
    if fields is not None:
        assert [detail["field"] for detail in response.json()["details"]] == fields


@pytest.mark.parametrize(
    ("action", "body"),
    [("visits", VISIT), ("notes", {"text": "Hola"}), ("identities", {"email": "a@b.co"})],
)
def test_writing_on_an_unknown_customer_is_a_404(co_stack: LocalStack, action: str, body: dict[str, str]) -> None:
    response = agent(co_stack, "POST", f"/v1/customers/cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2/{action}", body, key="k")
    assert response.status == 404, response.body
    assert response.json()["error"] == "not_found"


def test_an_agent_merges_two_callers_and_undoes_it(co_stack: LocalStack) -> None:
    # Given two callers the agent knows are one person
    phone_a, first = a_caller(co_stack)
    phone_b, second = a_caller(co_stack)
    # When the agent merges them
    merged = agent(co_stack, "POST", f"/v1/customers/{second}/merge",
                   {"other_customer_id": first, "reason": "Mismo cliente, dos teléfonos"})  # fmt: skip
    # Then it is accepted, with the older profile surviving, and carried out by the merge function
    assert merged.status == 202, merged.body
    record = merged.json()
    assert (record["survivor_id"], record["absorbed_id"], record["status"]) == (first, second, "merging")
    assert record["evidence"]["actor"] == {"kind": "agent", "id": "dev"}
    history = wait_for(co_stack, f"/v1/customers/{first}/merges",
                       lambda body: body["merges"][0]["status"] == "merged")  # fmt: skip
    assert history["merges"][0]["merge_id"] == record["merge_id"]
    assert agent(co_stack, "GET", f"/v1/customers?phone={quote(phone_b)}").json()["customer"]["id"] == first
    assert agent(co_stack, "GET", f"/v1/customers/{second}").json()["customer"]["merged_into"] == first
    # When the agent undoes it
    undone = agent(co_stack, "POST", f"/v1/customers/{first}/unmerge",
                   {"merge_id": record["merge_id"], "reason": "Eran hermanos"})  # fmt: skip
    assert undone.status == 202, undone.body
    wait_for(co_stack, f"/v1/customers/{first}/merges", lambda body: body["merges"][0]["status"] == "unmerged")
    # Then each number finds its own customer again, and the two are kept apart from then on
    assert agent(co_stack, "GET", f"/v1/customers?phone={quote(phone_b)}").json()["customer"]["id"] == second
    assert agent(co_stack, "GET", f"/v1/customers?phone={quote(phone_a)}").json()["customer"]["id"] == first
    assert agent(co_stack, "GET", f"/v1/customers/{first}/merges").json()["never_merge_with"] == [second]
    again = agent(co_stack, "POST", f"/v1/customers/{first}/merge", {"other_customer_id": second})
    assert again.status == 409, again.body
    assert "never be merged" in again.json()["message"]


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [
        ("merge", {}, 422),
        ("merge", {"other_customer_id": "cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}, 404),
        ("unmerge", {"merge_id": "mrg_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}, 404),
        ("unmerge", {"merge_id": "nope"}, 422),
        ("never-merge", {"other_customer_id": "cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}, 404),
        ("unknown-action", {}, 404),
    ],
)
def test_merge_mistakes_get_a_json_error(
    co_stack: LocalStack, someone: str, action: str, body: dict[str, str], status: int
) -> None:
    response = agent(co_stack, "POST", f"/v1/customers/{someone}/{action}", body)
    assert response.status == status, response.body
    assert response.json()["error"] in ("unprocessable", "not_found")


def test_writes_need_a_token(co_stack: LocalStack, someone: str) -> None:
    response = http("POST", f"{co_stack.api_url}/v1/customers/{someone}/visits", json.dumps(VISIT),
                    {"content-type": "application/json", "idempotency-key": "k"})  # fmt: skip
    assert response.status == 401  # from the twin's JWT authorizer, as API Gateway answers before the function
