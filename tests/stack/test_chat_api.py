"""The web chat API on the local twin: sessions, visitor messages onto InboundQueue, and polling the log."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hilo.local.stack import LocalStack
from shared.adapters.chat_store import ChatStore
from shared.providers import webchat
from tests.helpers import HttpResult, QueueCollector, http

pytestmark = pytest.mark.stack

JSON = {"content-type": "application/json"}


def start(stack: LocalStack, **fields: Any) -> dict[str, Any]:
    response = http("POST", f"{stack.api_url}/v1/chat/sessions", json.dumps(fields), JSON)
    assert response.status == 201, response.body
    return response.json()  # type: ignore[no-any-return]


def send(stack: LocalStack, session_id: str, token: str | None, **fields: Any) -> HttpResult:
    headers = {**JSON, **({"authorization": f"Bearer {token}"} if token else {})}
    return http("POST", f"{stack.api_url}/v1/chat/sessions/{session_id}/messages", json.dumps(fields), headers)


def poll(stack: LocalStack, session_id: str, token: str, query: str = "") -> HttpResult:
    url = f"{stack.api_url}/v1/chat/sessions/{session_id}/messages{query}"
    return http("GET", url, headers={"x-hilo-chat-token": token})


def key(stack: LocalStack) -> bytes:
    secrets = stack.client("secretsmanager")
    return secrets.get_secret_value(SecretId=stack.physical_id("ChatTokenSecret"))["SecretString"].encode()  # type: ignore[no-any-return]


def test_a_visitor_message_is_stored_enqueued_and_polled_back(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given a session opened with the visitor's name and e-mail
    session = start(hilo_stack, name="Valentina Ruiz", email="vale@example.com", locale="es", page_url="https://x.co/p")
    assert session["session_id"].startswith("chs_")
    assert datetime.fromisoformat(session["expires_at"]) > datetime.now(UTC) + timedelta(hours=23)
    client_id = uuid.uuid4().hex
    # When the visitor writes
    response = send(hilo_stack, session["session_id"], session["token"], client_message_id=client_id,
                    text="Hola, quiero cambiar la dirección de mi pedido", phone="+57 300 123 4567")  # fmt: skip
    # Then the message is accepted
    assert response.status == 201
    answer = response.json()
    assert answer["message_id"].startswith("chm_")
    # and lands on InboundQueue with everything ingest needs to link the visitor
    (body,) = inbound_queue.wait_for(provider_message_id=f"{session['session_id']}:{client_id}")
    assert (body["channel"], body["provider"], body["kind"]) == ("webchat", "hilo", "message")
    assert body["sender"] == {"value": session["session_id"], "name": "Valentina Ruiz"}
    assert body["recipient"] == {"value": "webchat", "name": None}
    assert body["parts"] == [{"type": "text", "text": "Hola, quiero cambiar la dirección de mi pedido"}]
    assert body["metadata"]["email"] == "vale@example.com"
    assert body["metadata"]["phone"] == "+573001234567"
    assert datetime.fromisoformat(body["occurred_at"]) == datetime.fromisoformat(answer["received_at"])
    # and the poll returns it
    listed = poll(hilo_stack, session["session_id"], session["token"])
    assert listed.status == 200
    (message,) = listed.json()["messages"]
    assert message["id"] == answer["message_id"]
    assert message["direction"] == "inbound"
    assert message["client_message_id"] == client_id
    assert listed.json()["next_cursor"]


def test_an_empty_body_opens_an_anonymous_session(hilo_stack: LocalStack) -> None:
    response = http("POST", f"{hilo_stack.api_url}/v1/chat/sessions")
    assert response.status == 201
    assert set(response.json()) == {"session_id", "token", "expires_at"}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "no-es-un-correo"},
        {"phone": "3001234567"},
        {"phone": "+57 300"},
        {"locale": "pt"},
        {"name": "x" * 101},
        {"favourite_colour": "azul"},
    ],
)
def test_invalid_session_details_are_a_400_naming_the_field(hilo_stack: LocalStack, body: dict[str, Any]) -> None:
    response = http("POST", f"{hilo_stack.api_url}/v1/chat/sessions", json.dumps(body), JSON)
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"
    assert response.json()["details"][0]["field"] == next(iter(body))


def test_retries_of_one_client_message_make_one_item_and_one_queue_message(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given a session and a message the widget will retry
    session = start(hilo_stack)
    sid, token, client_id = session["session_id"], session["token"], uuid.uuid4().hex
    fields = {"client_message_id": client_id, "text": "¿Tienen servicio a domicilio en Guadalajara?"}
    # When it is sent three times in a row and three times at once
    first = send(hilo_stack, sid, token, **fields)
    again = [send(hilo_stack, sid, token, **fields) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        again += list(pool.map(lambda _: send(hilo_stack, sid, token, **fields), range(3)))
    # Then the first is created, the rest answer the same message
    assert first.status == 201
    assert [response.status for response in again] == [200] * 5
    assert [response.json() for response in again] == [first.json()] * 5
    # and the log and the queue hold it once
    assert len(poll(hilo_stack, sid, token).json()["messages"]) == 1
    assert len(inbound_queue.wait_for(count=2, timeout=3.0, provider_message_id=f"{sid}:{client_id}")) == 1


def test_the_same_client_id_with_other_text_is_a_409(hilo_stack: LocalStack) -> None:
    session = start(hilo_stack)
    sid, token = session["session_id"], session["token"]
    assert send(hilo_stack, sid, token, client_message_id="m-1", text="hola").status == 201
    response = send(hilo_stack, sid, token, client_message_id="m-1", text="otra cosa")
    assert response.status == 409


def test_tokens_are_checked(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    # Given two sessions and the real signing key
    mine, other = start(hilo_stack), start(hilo_stack)
    sid = mine["session_id"]
    expired = webchat.sign_token(key(hilo_stack), sid, datetime.now(UTC) - timedelta(seconds=1))
    forged = webchat.sign_token(b"not-the-key", sid, datetime.now(UTC) + timedelta(hours=1))
    fields = {"client_message_id": uuid.uuid4().hex, "text": "hola"}
    # Then
    assert send(hilo_stack, sid, None, **fields).status == 401
    assert send(hilo_stack, sid, "garbage", **fields).status == 401
    assert send(hilo_stack, sid, forged, **fields).status == 401
    assert send(hilo_stack, sid, expired, **fields).json()["error"] == "unauthorized"
    assert send(hilo_stack, sid, other["token"], **fields).status == 403
    assert poll(hilo_stack, sid, expired).status == 401
    assert poll(hilo_stack, sid, other["token"]).status == 403
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=f"{sid}:{fields['client_message_id']}") == []
    # and a valid token for a session that was never stored is a 404
    ghost = "chs_" + "A" * 22
    assert send(hilo_stack, ghost, webchat.sign_token(key(hilo_stack), ghost, datetime.now(UTC) + timedelta(hours=1)),
                **fields).status == 404  # fmt: skip


def test_bad_message_bodies_are_4xx(hilo_stack: LocalStack) -> None:
    session = start(hilo_stack)
    sid, token = session["session_id"], session["token"]
    url = f"{hilo_stack.api_url}/v1/chat/sessions/{sid}/messages"
    headers = {**JSON, "authorization": f"Bearer {token}"}
    assert http("POST", url, b"no es json", headers).status == 400
    assert send(hilo_stack, sid, token, client_message_id="a", text="   ").status == 400
    assert send(hilo_stack, sid, token, client_message_id="a", text="x" * 4001).status == 400
    assert send(hilo_stack, sid, token, client_message_id="a" * 65, text="hola").status == 400
    assert send(hilo_stack, sid, token, client_message_id="a", text="hola", extra=1).status == 400
    too_big = http("POST", url, json.dumps({"client_message_id": "a", "text": "x" * 17000}), headers)
    assert too_big.status == 413


def test_an_agent_reply_is_returned_after_the_cursor(hilo_stack: LocalStack) -> None:
    # Given a visitor message already polled
    session = start(hilo_stack, name="Diego")
    sid, token = session["session_id"], session["token"]
    assert send(hilo_stack, sid, token, client_message_id="v-1", text="¿Siguen abiertos?").status == 201
    cursor = poll(hilo_stack, sid, token).json()["next_cursor"]
    # When the agent's reply is appended the way the web chat sender does it
    store = ChatStore(hilo_stack.physical_id("ProfileTable"), client=hilo_stack.client("dynamodb"))
    reply_at = datetime.now(UTC)
    store.append_outbound(sid, "msg_01JAGENTREPLY0000000000000", "Sí, hasta las 8 pm 🙂", reply_at)
    # Then polling after the cursor returns only the reply
    page = poll(hilo_stack, sid, token, f"?after={cursor}").json()
    assert page["messages"] == [
        {"id": "msg_01JAGENTREPLY0000000000000", "direction": "outbound", "text": "Sí, hasta las 8 pm 🙂",
         "at": reply_at.isoformat()}
    ]  # fmt: skip
    # and polling after that returns nothing new, keeping the cursor
    quiet = poll(hilo_stack, sid, token, f"?after={page['next_cursor']}").json()
    assert quiet == {"messages": [], "next_cursor": page["next_cursor"], "has_more": False}


def test_pages_follow_the_cursor_in_order(hilo_stack: LocalStack) -> None:
    session = start(hilo_stack)
    sid, token = session["session_id"], session["token"]
    for number in range(5):
        assert send(hilo_stack, sid, token, client_message_id=f"m{number}", text=f"mensaje {number}").status == 201
    first = poll(hilo_stack, sid, token, "?limit=3").json()
    second = poll(hilo_stack, sid, token, f"?limit=3&after={first['next_cursor']}").json()
    assert [m["text"] for m in first["messages"] + second["messages"]] == [f"mensaje {n}" for n in range(5)]
    assert (first["has_more"], second["has_more"]) == (True, False)


@pytest.mark.parametrize("query", ["?after=nope", "?after=TVNHIzE", "?limit=0", "?limit=101", "?limit=diez"])
def test_a_bad_cursor_or_limit_is_a_400(hilo_stack: LocalStack, query: str) -> None:
    session = start(hilo_stack)
    response = poll(hilo_stack, session["session_id"], session["token"], query)
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"
