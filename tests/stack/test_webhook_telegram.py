"""POST /webhooks/telegram on the local twin: real HTTP in, the envelope on InboundQueue out."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, QueueCollector, http

pytestmark = pytest.mark.stack

TOKEN = TEST_CONFIG["HILO_TELEGRAM_SECRET_TOKEN"]
DATE = 1_773_500_000


def ids() -> tuple[int, int]:
    """A chat id and message id no other test uses, so queue assertions never see another test's traffic."""
    return 7_000_000_000 + secrets.randbelow(10**9), 1 + secrets.randbelow(10**6)


def update(chat_id: int, message_id: int, **fields: Any) -> bytes:
    user = {"id": chat_id, "is_bot": False, "first_name": "Mateo", "last_name": "Gómez", "language_code": "es"}
    message = {"message_id": message_id, "from": user, "chat": {"id": chat_id, "type": "private"}, "date": DATE}
    return json.dumps({"update_id": 800_000_000 + message_id, "message": {**message, **fields}}).encode()


def post(
    stack: LocalStack, body: bytes, token: str | None = TOKEN, content_type: str = "application/json"
) -> HttpResult:
    headers = {"content-type": content_type}
    if token is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = token
    return http("POST", f"{stack.api_url}/webhooks/telegram", body, headers)


def test_a_text_message_lands_on_the_inbound_queue(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    # Given
    chat_id, message_id = ids()
    # When
    response = post(hilo_stack, update(chat_id, message_id, text="Buenas, ¿el pedido 4411 ya salió?"))
    # Then Telegram gets the 200 it waits for
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    (body,) = inbound_queue.wait_for(provider_message_id=f"{chat_id}:{message_id}")
    assert body["channel"] == body["provider"] == "telegram"
    assert body["kind"] == "message"
    assert body["sender"] == {"value": str(chat_id), "name": "Mateo Gómez"}
    assert body["recipient"] == {"value": "bot", "name": None}
    assert body["parts"] == [{"type": "text", "text": "Buenas, ¿el pedido 4411 ya salió?"}]
    assert body["occurred_at"].startswith("2026-03-14T")
    assert body["metadata"]["update_id"] == str(800_000_000 + message_id)
    assert body["_attributes"]["MessageGroupId"] == f"telegram:{chat_id}"


def test_a_shared_contact_arrives_with_its_phone_in_e164(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    chat_id, message_id = ids()
    contact = {"phone_number": "5215512345678", "first_name": "Mateo", "user_id": chat_id}
    assert post(hilo_stack, update(chat_id, message_id, contact=contact)).status == 200
    (body,) = inbound_queue.wait_for(provider_message_id=f"{chat_id}:{message_id}")
    assert body["parts"] == [{"type": "contact", "name": "Mateo", "phones": ["+5215512345678"], "emails": []}]
    assert body["metadata"]["contact_is_sender"] == "true"


def test_a_button_tap_is_enqueued_and_answered_with_answer_callback_query(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    chat_id, message_id = ids()
    query_id = secrets.token_hex(8)
    user = {"id": chat_id, "is_bot": False, "first_name": "Mateo"}
    bot_message = {"message_id": message_id, "chat": {"id": chat_id, "type": "private"}, "date": DATE, "text": "¿Sí?"}
    body = {"update_id": 1, "callback_query": {"id": query_id, "from": user, "chat_instance": "9", "data": "si",
                                                "message": bot_message}}  # fmt: skip
    response = post(hilo_stack, json.dumps(body).encode())
    assert response.status == 200
    assert response.json() == {"method": "answerCallbackQuery", "callback_query_id": query_id}
    (queued,) = inbound_queue.wait_for(provider_message_id=f"callback:{query_id}")
    assert queued["parts"] == [{"type": "interactive_reply", "reply_id": "si", "title": "si", "kind": "button"}]


@pytest.mark.parametrize("token", [None, "", "telegram-secret_token-2", TOKEN.upper()])
def test_a_missing_or_wrong_secret_token_is_401_and_nothing_is_enqueued(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, token: str | None
) -> None:
    chat_id, message_id = ids()
    response = post(hilo_stack, update(chat_id, message_id, text="hola"), token=token)
    assert response.status == 401
    assert response.json()["error"] == "unauthorized"
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=f"{chat_id}:{message_id}") == []


@pytest.mark.parametrize("body", [b"no soy json", b"[1, 2]", b'{"message": {"text": "hola"}}'])
def test_a_body_that_is_not_an_update_is_a_json_400(hilo_stack: LocalStack, body: bytes) -> None:
    response = post(hilo_stack, body)
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"


def test_a_body_over_one_mib_is_a_json_413(hilo_stack: LocalStack) -> None:
    chat_id, message_id = ids()
    response = post(hilo_stack, update(chat_id, message_id, text="a" * (1024 * 1024)))
    assert response.status == 413
    assert response.json()["error"] == "payload_too_large"


def test_group_messages_and_other_update_types_are_acknowledged_and_ignored(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    chat_id, message_id = ids()
    group = update(chat_id, message_id, chat={"id": -chat_id, "type": "group", "title": "Ventas"}, text="hola")
    member = json.dumps({"update_id": 5, "my_chat_member": {"chat": {"id": chat_id, "type": "private"}}}).encode()
    for body in (group, member):
        response = post(hilo_stack, body)
        assert response.status == 200
        assert response.json() == {}
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=f"{-chat_id}:{message_id}") == []


def test_replays_sequential_and_concurrent_enqueue_one_message(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given one update Telegram re-sends (its retries carry the same body)
    chat_id, message_id = ids()
    body = update(chat_id, message_id, text="¿Me confirman la dirección de entrega?")
    # When it arrives three times in a row, then three times at once
    statuses = [post(hilo_stack, body).status for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses += [result.status for result in pool.map(lambda _: post(hilo_stack, body), range(3))]
    # Then every delivery is acknowledged and the queue holds it once
    assert statuses == [200] * 6
    assert len(inbound_queue.wait_for(count=2, timeout=3.0, provider_message_id=f"{chat_id}:{message_id}")) == 1


def test_base64_encoded_and_text_bodies_both_verify(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    # The twin, like API Gateway, base64-encodes a body whose Content-Type is not text.
    chat_id, first = ids()
    assert post(hilo_stack, update(chat_id, first, text="uno"), content_type="application/octet-stream").status == 200
    assert post(hilo_stack, update(chat_id, first + 1, text="dos"), content_type="application/json").status == 200
    assert inbound_queue.wait_for(provider_message_id=f"{chat_id}:{first}")[0]["parts"][0]["text"] == "uno"
    assert inbound_queue.wait_for(provider_message_id=f"{chat_id}:{first + 1}")[0]["parts"][0]["text"] == "dos"
