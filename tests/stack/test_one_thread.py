"""Issue #4's end-to-end story over real HTTP on the local twin: a call, WhatsApp, a web chat where the customer
gives their e-mail, an e-mail from that address, and an in-store visit found by cédula are ONE profile and ONE
case, every channel's entries in the order they happened."""

from __future__ import annotations

import json
import math
import secrets
import time
from datetime import datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import pytest

from hilo.local import providers
from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, http, poll_json, whatsapp_text
from tests.stack.test_email_inbound import AUTH, BOUNDARY, envelope_field, form

pytestmark = pytest.mark.stack

AGENT = {"authorization": f"Bearer {TEST_CONFIG['HILO_DEV_TOKEN']}", "content-type": "application/json"}
STORE = "+5716017000"


def agent(stack: LocalStack, method: str, path: str, body: Any = None, **headers: str) -> HttpResult:
    payload = json.dumps(body) if body is not None else None
    return http(method, f"{stack.api_url}{path}", payload, {**AGENT, **headers})


def eventually(stack: LocalStack, path: str, done: Any, timeout: float = 30.0) -> Any:
    return poll_json(f"{stack.api_url}{path}", AGENT, done, timeout)


def twin_now(stack: LocalStack) -> float:
    """The twin's clock (other tests may have advanced it): the time its functions stamp entries with."""
    return datetime.fromisoformat(http("GET", f"{stack.api_url}/_dev/clock").json()["now"]).timestamp()


def next_second(stack: LocalStack) -> int:
    """Sleep into the twin's next whole second and return it: providers stamp messages to the second."""
    now = twin_now(stack)
    at = math.floor(now) + 1
    time.sleep(max(0.0, at - now) + 0.05)
    return at


def voice(stack: LocalStack, path: str, params: dict[str, str]) -> None:
    url = f"{stack.api_url}{path}"
    body, headers = providers.twilio_form(url, params, TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"])
    assert http("POST", url, body, headers).status == 200


def email_from(stack: LocalStack, sender: str, at: int, text: str) -> None:
    mime = (
        f"From: Ana María <{sender}>\r\nTo: soporte@tienda.example\r\nSubject: Factura del televisor\r\n"
        f"Date: {formatdate(at)}\r\nMessage-ID: <{secrets.token_hex(8)}@mail.gmail.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
    ).encode()
    body = form([("email", mime), ("envelope", envelope_field(sender)), ("SPF", "pass")])
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "authorization": AUTH}
    response = http("POST", f"{stack.api_url}/webhooks/email/sendgrid", body, headers)
    assert response.status == 200, response.body


def test_every_channel_lands_in_one_profile_and_one_case_in_order(hilo_stack: LocalStack) -> None:
    national = f"300{secrets.randbelow(10**7):07d}"
    phone, cedula = f"+57{national}", f"10{secrets.randbelow(10**8):08d}"
    address = f"ana.{secrets.token_hex(4)}@gmail.com"
    by_cedula = f"/v1/customers?national_id={cedula}&country=CO&document_type=CC"

    # 1. A voice call from a Colombian mobile; the caller types their cédula in the IVR
    call = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32, "From": phone, "To": STORE,
            "CallStatus": "ringing", "Direction": "inbound"}  # fmt: skip
    voice(hilo_stack, "/webhooks/twilio/voice", call)
    voice(hilo_stack, "/webhooks/twilio/voice?step=id", {**call, "CallStatus": "in-progress", "Digits": cedula})
    customer_id = eventually(hilo_stack, by_cedula, lambda body: True)["customer"]["id"]

    # 2. WhatsApp from the same number
    whatsapp_text(
        hilo_stack.api_url,
        TEST_CONFIG["HILO_META_APP_SECRET"],
        f"57{national}",
        "Les mando la foto del televisor",
        next_second(hilo_stack),
    )

    # 3. The web chat: the customer gives their e-mail and number in the chat form, then writes
    next_second(hilo_stack)
    session = http("POST", f"{hilo_stack.api_url}/v1/chat/sessions",
                   json.dumps({"name": "Ana María", "email": address, "phone": f"+57 {national}"}),
                   {"content-type": "application/json"}).json()  # fmt: skip
    sent = http("POST", f"{hilo_stack.api_url}/v1/chat/sessions/{session['session_id']}/messages",
                json.dumps({"client_message_id": secrets.token_hex(8), "text": "¿Me envían la factura al correo?"}),
                {"content-type": "application/json", "authorization": f"Bearer {session['token']}"})  # fmt: skip
    assert sent.status in (200, 201, 202), sent.body
    # ...which joins the chat's new profile to the caller's, so the e-mail now finds the caller
    eventually(hilo_stack, f"/v1/customers?email={quote(address)}",
               lambda body: body["customer"]["id"] == customer_id)  # fmt: skip

    # 4. An e-mail from the address given in the chat
    email_from(hilo_stack, address, next_second(hilo_stack), "Adjunto el número de pedido: 4411")
    eventually(hilo_stack, f"/v1/customers/{customer_id}/timeline?channel=email", lambda body: body["entries"])

    # 5. At the store, the clerk types the cédula and records the visit on what they find
    next_second(hilo_stack)
    found = agent(hilo_stack, "GET", by_cedula).json()["customer"]["id"]
    visit = agent(hilo_stack, "POST", f"/v1/customers/{found}/visits",
                  {"store": "Unicentro Bogotá", "summary": "Cambio del televisor; cita el sábado"},
                  **{"idempotency-key": secrets.token_hex(8)})  # fmt: skip
    assert visit.status == 201, visit.body

    # Then: one profile holding every identity, one case, and the entries of every channel in order
    card = agent(hilo_stack, "GET", f"/v1/customers/{customer_id}").json()
    kinds = {identity["kind"] for identity in card["customer"]["identities"]}
    assert kinds >= {"phone", "whatsapp", "national_id", "webchat", "email"}
    entries = list(reversed(agent(hilo_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["entries"]))
    interactions = [entry for entry in entries if entry["kind"] != "note"]
    assert [entry["channel"] for entry in interactions] == [
        "voice",
        "voice",
        "whatsapp",
        "webchat",
        "email",
        "in_store",
    ]
    assert len({entry["conversation_id"] for entry in interactions}) == 1
    assert card["current_conversation"]["id"] == interactions[0]["conversation_id"]
    assert set(card["current_conversation"]["channels"]) == {"voice", "whatsapp", "webchat", "email", "in_store"}
    assert [entry["occurred_at"] for entry in interactions] == sorted(entry["occurred_at"] for entry in interactions)
    # and the merge that made the chat's profile this one is on record, with its evidence
    merges = agent(hilo_stack, "GET", f"/v1/customers/{customer_id}/merges").json()["merges"]
    assert [(merge["status"], merge["evidence"]["source"]) for merge in merges] == [("merged", "webchat_phone")]
