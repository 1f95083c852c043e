"""The agent API on the local twin: a customer who called and then wrote on WhatsApp is one
profile and one case, found by any form of their number, with every channel on one timeline."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote

import pytest

from hilo.local import providers
from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, http, poll_json, whatsapp_text

pytestmark = pytest.mark.stack

AGENT = {"authorization": f"Bearer {TEST_CONFIG['HILO_DEV_TOKEN']}"}


def agent_get(stack: LocalStack, path: str) -> HttpResult:
    return http("GET", f"{stack.api_url}{path}", headers=AGENT)


def call_from(stack: LocalStack, phone: str) -> None:
    url = f"{stack.api_url}/webhooks/twilio/voice"
    params = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32, "From": phone,
              "To": "+5716017000", "CallStatus": "ringing", "Direction": "inbound"}  # fmt: skip
    body, headers = providers.twilio_form(url, params, TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"])
    assert http("POST", url, body, headers).status == 200


def whatsapp_from(stack: LocalStack, wa_id: str, text: str) -> None:
    whatsapp_text(stack.api_url, TEST_CONFIG["HILO_META_APP_SECRET"], wa_id, text, int(time.time()) + 60)


def wait_for(stack: LocalStack, path: str, done: Any, timeout: float = 20.0) -> Any:
    return poll_json(f"{stack.api_url}{path}", AGENT, done, timeout)


def test_a_call_then_whatsapp_from_one_number_is_one_customer_and_one_case(hilo_stack: LocalStack) -> None:
    # Given a customer who calls from a Colombian mobile, then writes on WhatsApp (wa_id: digits, no '+')
    national = f"300{secrets.randbelow(10**7):07d}"
    call_from(hilo_stack, f"+57{national}")
    whatsapp_from(hilo_stack, f"57{national}", "Les mando la foto del televisor roto")
    # When an agent looks them up by the number as a clerk would type it (with its country code, spaces and all)
    phone = quote(f"+57 {national[:3]} {national[3:6]} {national[6:]}")
    card = wait_for(hilo_stack, f"/v1/customers?phone={phone}",
                    lambda body: len((body["current_conversation"] or {}).get("channels", [])) == 2)  # fmt: skip
    # Then one profile with both identities, and one open case on both channels
    customer_id = card["customer"]["id"]
    assert {identity["kind"] for identity in card["customer"]["identities"]} == {"phone", "whatsapp"}
    assert card["current_conversation"]["channels"] == ["voice", "whatsapp"]
    assert card["current_conversation"]["status"] == "open"
    timeline = agent_get(hilo_stack, f"/v1/customers/{customer_id}/timeline").json()
    assert [entry["channel"] for entry in timeline["entries"]] == ["whatsapp", "voice"]  # newest first
    assert timeline["entries"][0]["message"]["parts"] == [
        {"type": "text", "text": "Les mando la foto del televisor roto"}
    ]
    assert len({entry["conversation_id"] for entry in timeline["entries"]}) == 1
    only_voice = agent_get(hilo_stack, f"/v1/customers/{customer_id}/timeline?channel=voice").json()
    assert [entry["channel"] for entry in only_voice["entries"]] == ["voice"]
    (conversation,) = agent_get(hilo_stack, f"/v1/customers/{customer_id}/conversations").json()["conversations"]
    assert agent_get(hilo_stack, f"/v1/conversations/{conversation['id']}").json()["id"] == conversation["id"]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/customers?phone=%2B573009999999", 404, "not_found"),  # valid, but nobody has it
        ("/v1/customers?phone=12", 422, "unprocessable"),
        ("/v1/customers?national_id=1234567890&country=CL&document_type=RUT", 422, "unprocessable"),
        ("/v1/customers?identity=fax:123", 422, "unprocessable"),
        ("/v1/customers", 400, "invalid_input"),
        ("/v1/customers?phone=%2B573001234567&email=a%40b.co", 400, "invalid_input"),
        ("/v1/customers/cus_nobody", 404, "not_found"),
        ("/v1/customers/cus_nobody/timeline", 404, "not_found"),
        ("/v1/customers/cus_nobody/timeline?limit=0", 400, "invalid_input"),
        ("/v1/customers/cus_nobody/timeline?channel=fax", 400, "invalid_input"),
        ("/v1/conversations/conv_nobody", 404, "not_found"),
    ],
)
def test_bad_or_unknown_identifiers_get_a_json_error(
    hilo_stack: LocalStack, path: str, status: int, error: str
) -> None:
    response = agent_get(hilo_stack, path)
    assert response.status == status, response.body
    assert response.json()["error"] == error


def test_only_the_dev_token_opens_the_agent_api_locally(hilo_stack: LocalStack) -> None:
    response = http("GET", f"{hilo_stack.api_url}/v1/customers/cus_x", headers={"authorization": "Bearer nope"})
    assert response.status == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="hilo"'
    assert response.json()["error"] == "unauthorized"
