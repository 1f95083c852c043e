"""Message text, phone numbers, names and e-mail addresses never reach the logs, on any channel, accepted or not."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

import pytest

from hilo.local import providers
from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, http

pytestmark = pytest.mark.stack

# Distinctive values a log line could only contain by leaking them.
TEXT = "Mi cédula es 1032456789 y el televisor llegó roto " + secrets.token_hex(4)
PHONE_DIGITS = "57301" + str(1_000_000 + secrets.randbelow(8_999_999))
NAME = "Ximena Quintero " + secrets.token_hex(3)
EMAIL = f"ximena.{secrets.token_hex(3)}@correo.example"
SECRET_VALUES = [value for key, value in TEST_CONFIG.items() if key != "HILO_DEFAULT_REGION"]


def _twilio(stack: LocalStack, body: str, signed: bool = True) -> HttpResult:
    url = f"{stack.api_url}/webhooks/twilio/messages"
    pairs = [("MessageSid", "SM" + secrets.token_hex(16)), ("AccountSid", "AC" + "0" * 32), ("Body", body),
             ("From", f"whatsapp:+{PHONE_DIGITS}"), ("To", "whatsapp:+13055550123"), ("ProfileName", NAME)]  # fmt: skip
    raw, headers = providers.twilio_form(url, pairs, TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"] if signed else "wrong")
    return http("POST", url, raw, headers)


def _meta(stack: LocalStack, body: str, signed: bool = True) -> HttpResult:
    message = {"from": PHONE_DIGITS, "id": "wamid." + secrets.token_hex(12), "timestamp": "1795387940",
               "type": "text", "text": {"body": body}}  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "13055550123",
             "phone_number_id": "1122334455"}, "contacts": [{"profile": {"name": NAME}, "wa_id": PHONE_DIGITS}],
             "messages": [message]}  # fmt: skip
    document = {"object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip
    raw, headers = providers.meta_json(document, TEST_CONFIG["HILO_META_APP_SECRET"] if signed else "wrong")
    return http("POST", f"{stack.api_url}/webhooks/whatsapp", raw, headers)


def _telegram(stack: LocalStack, body: str, signed: bool = True) -> HttpResult:
    user_id = 7_100_000_000 + secrets.randbelow(10**8)
    user = {"id": user_id, "is_bot": False, "first_name": NAME}
    contact = {"phone_number": PHONE_DIGITS, "first_name": NAME, "user_id": user_id}
    message = {"message_id": 1, "from": user, "chat": {"id": user_id, "type": "private"}, "date": 1795387940,
               "text": body, "contact": contact}  # fmt: skip
    token = TEST_CONFIG["HILO_TELEGRAM_SECRET_TOKEN"] if signed else "wrong"
    return http("POST", f"{stack.api_url}/webhooks/telegram", json.dumps({"update_id": 5, "message": message}),
                {"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": token})  # fmt: skip


def _webchat(stack: LocalStack, body: str, signed: bool = True) -> HttpResult:
    session = http("POST", f"{stack.api_url}/v1/chat/sessions", json.dumps({"name": NAME, "email": EMAIL}),
                   {"content-type": "application/json"}).json()  # fmt: skip
    token = session["token"] if signed else "forged." + session["token"]
    message = {"client_message_id": secrets.token_hex(4), "text": body, "phone": f"+{PHONE_DIGITS}"}
    return http("POST", f"{stack.api_url}/v1/chat/sessions/{session['session_id']}/messages", json.dumps(message),
                {"content-type": "application/json", "authorization": f"Bearer {token}"})  # fmt: skip


SENDERS: dict[str, Callable[..., HttpResult]] = {
    "twilio": _twilio,
    "whatsapp": _meta,
    "telegram": _telegram,
    "webchat": _webchat,
}


def _logs_after(stack: LocalStack, offset: int, marker: str) -> str:
    """The stack's log output since ``offset``, once ``marker`` was printed and the output stopped growing."""
    output = stack.config.output
    deadline = time.monotonic() + 10
    seen = ""
    while True:
        time.sleep(0.3)
        text = output.getvalue()[offset:]  # type: ignore[attr-defined]
        if (marker in text and text == seen) or time.monotonic() > deadline:
            return text
        seen = text


@pytest.mark.parametrize("channel", sorted(SENDERS))
def test_no_personal_data_or_secret_reaches_the_logs(hilo_stack: LocalStack, channel: str) -> None:
    # Given
    send = SENDERS[channel]
    offset = len(hilo_stack.config.output.getvalue())  # type: ignore[attr-defined]
    # When: an accepted request, a forged one, and one whose text is too long for any channel
    accepted = send(hilo_stack, TEXT)
    forged = send(hilo_stack, TEXT, signed=False)
    oversized = send(hilo_stack, TEXT * 2000)
    # Then the requests did what they should, and were logged...
    assert accepted.status in (200, 201), accepted.body
    assert forged.status in (401, 403), forged.body
    assert oversized.status < 500, oversized.body
    logs = _logs_after(hilo_stack, offset, "request rejected")
    assert "request rejected" in logs
    assert logs.count('"correlation_id"') >= 3
    # ...with ids and counts, never what the customer wrote, who they are, or a secret
    leaks = [value for value in (TEXT[:30], PHONE_DIGITS, NAME, EMAIL, *SECRET_VALUES) if value in logs]
    assert leaks == []
