"""GET/POST /webhooks/{whatsapp,messenger,instagram} on the local twin: real HTTP in, Meta-signed; envelopes out."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, QueueCollector, http

pytestmark = pytest.mark.stack

APP_SECRET = TEST_CONFIG["HILO_META_APP_SECRET"]
VERIFY_TOKEN = TEST_CONFIG["HILO_META_VERIFY_TOKEN"]
TS = 1_773_500_000
PHONE_NUMBER_ID = "106540352242922"
PAGE_ID = "104567891234567"


def unique(prefix: str) -> str:
    """An id no other test uses, so queue assertions never see another test's traffic."""
    return f"{prefix}{secrets.token_hex(8)}"


def wa_id() -> str:
    return f"57300{secrets.randbelow(10**7):07d}"


def post(stack: LocalStack, channel: str, document: dict[str, Any], *, signature: str | None = "sign",
         content_type: str = "application/json") -> HttpResult:  # fmt: skip
    body = json.dumps(document).encode()  # non-ASCII escaped as \u00e1, as Meta sends it
    headers = {"content-type": content_type}
    if signature == "sign":
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return http("POST", f"{stack.api_url}/webhooks/{channel}", body, headers)


def wa_message(sender: str, wamid: str, kind: str, content: Any) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": str(TS), "type": kind, kind: content}


def whatsapp(sender: str, messages: list[Any] | None = None, statuses: list[Any] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Valentina Ríos"}, "wa_id": sender}],
        "messages": messages or [],
    }
    if statuses:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip


def page(obj: str, sender: str, **event: Any) -> dict[str, Any]:
    messaging = {"sender": {"id": sender}, "recipient": {"id": PAGE_ID}, "timestamp": TS * 1000, **event}
    return {"object": obj, "entry": [{"id": PAGE_ID, "time": TS * 1000, "messaging": [messaging]}]}


@pytest.mark.parametrize("channel", ["whatsapp", "messenger", "instagram"])
def test_the_handshake_echoes_the_challenge_as_plain_text(hilo_stack: LocalStack, channel: str) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    response = http("GET", f"{hilo_stack.api_url}/webhooks/{channel}?{urlencode(query)}")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.body == b"1158201444"


def test_a_handshake_with_the_wrong_token_is_a_json_403(hilo_stack: LocalStack) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "otro-token", "hub.challenge": "1158201444"}
    response = http("GET", f"{hilo_stack.api_url}/webhooks/whatsapp?{urlencode(query)}")
    assert response.status == 403
    assert response.json()["error"] == "forbidden"
    assert b"1158201444" not in response.body


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_a_whatsapp_text_lands_on_the_inbound_queue(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, content_type: str
) -> None:
    # Given (the octet-stream variant reaches the function base64-encoded, as API Gateway does it)
    sender, wamid = wa_id(), unique("wamid.")
    document = whatsapp(sender, [wa_message(sender, wamid, "text", {"body": "¡Hola! ¿Tienen envíos a Medellín?"})])
    # When
    response = post(hilo_stack, "whatsapp", document, content_type=content_type)
    # Then
    assert response.status == 200
    (body,) = inbound_queue.wait_for(provider_message_id=wamid)
    assert (body["channel"], body["provider"], body["kind"]) == ("whatsapp", "meta", "message")
    assert body["sender"] == {"value": f"+{sender}", "name": "Valentina Ríos"}
    assert body["recipient"] == {"value": PHONE_NUMBER_ID, "name": None}
    assert body["parts"] == [{"type": "text", "text": "¡Hola! ¿Tienen envíos a Medellín?"}]
    assert body["occurred_at"].startswith("2026-03-14T")
    assert body["_attributes"]["MessageGroupId"] == f"whatsapp:+{sender}"
    assert body["_attributes"]["MessageDeduplicationId"] == f"meta:{wamid}"


def test_a_whatsapp_image_and_a_status_land_on_their_queues(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, status_queue: QueueCollector
) -> None:
    sender, wamid, ours = wa_id(), unique("wamid."), unique("wamid.OURS")
    image = {"caption": "Así llegó", "mime_type": "image/jpeg", "sha256": "IQ7x1LvQ3d0=", "id": "1479537139650973"}
    failed = {"id": ours, "status": "failed", "timestamp": str(TS), "recipient_id": sender,
              "errors": [{"code": 131047, "title": "Re-engagement message"}]}  # fmt: skip
    document = whatsapp(sender, [wa_message(sender, wamid, "image", image)], [failed])
    assert post(hilo_stack, "whatsapp", document).status == 200
    (message,) = inbound_queue.wait_for(provider_message_id=wamid)
    assert message["parts"] == [{"type": "media", "url": None, "provider_media_id": "1479537139650973",
                                 "mime_type": "image/jpeg", "caption": "Así llegó", "filename": None,
                                 "size_bytes": None}]  # fmt: skip
    (status,) = status_queue.wait_for(provider_message_id=ours)
    assert (status["channel"], status["status"], status["error_code"]) == ("whatsapp", "failed", "131047")
    assert status["recipient"]["value"] == f"+{sender}"


@pytest.mark.parametrize(("channel", "obj"), [("messenger", "page"), ("instagram", "instagram")])
def test_messenger_and_instagram_messages_land_on_the_inbound_queue(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, channel: str, obj: str
) -> None:
    sender, mid = unique("7"), unique("m_")
    document = page(obj, sender, message={"mid": mid, "text": "Quiero cambiar mi pedido"})
    assert post(hilo_stack, channel, document).status == 200
    (body,) = inbound_queue.wait_for(provider_message_id=mid)
    assert (body["channel"], body["kind"], body["sender"]["value"]) == (channel, "message", sender)
    assert body["recipient"]["value"] == PAGE_ID
    assert body["parts"] == [{"type": "text", "text": "Quiero cambiar mi pedido"}]
    assert body["_attributes"]["MessageGroupId"] == f"{channel}:{sender}"


@pytest.mark.parametrize("signature", [None, "", "sha256=" + "0" * 64, "sha1=da39a3ee5e6b4b0d3255bfef95601890afd80709"])
def test_a_missing_or_wrong_signature_is_a_json_401_and_nothing_is_enqueued(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, signature: str | None
) -> None:
    sender, wamid = wa_id(), unique("wamid.")
    document = whatsapp(sender, [wa_message(sender, wamid, "text", {"body": "hola"})])
    response = post(hilo_stack, "whatsapp", document, signature=signature)
    assert response.status == 401
    assert response.json()["error"] == "unauthorized"
    assert inbound_queue.wait_for(timeout=0.5, provider_message_id=wamid) == []


def test_a_signed_body_that_is_not_json_is_a_json_400(hilo_stack: LocalStack) -> None:
    body = b"no soy json"
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = http("POST", f"{hilo_stack.api_url}/webhooks/messenger", body,
                    {"content-type": "application/json", "X-Hub-Signature-256": signature})  # fmt: skip
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"


def test_replays_sequential_and_concurrent_enqueue_one_message(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given one notification Meta re-sends (its retries carry the same body)
    sender, wamid = wa_id(), unique("wamid.")
    document = whatsapp(sender, [wa_message(sender, wamid, "text", {"body": "¿Me confirman la entrega?"})])
    # When it arrives three times in a row, then three times at once
    statuses = [post(hilo_stack, "whatsapp", document).status for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses += [result.status for result in pool.map(lambda _: post(hilo_stack, "whatsapp", document), range(3))]
    # Then every delivery is acknowledged and the queue holds it once
    assert statuses == [200] * 6
    assert len(inbound_queue.wait_for(count=2, timeout=1.0, provider_message_id=wamid)) == 1


def test_three_messages_with_one_malformed_enqueue_two_and_answer_200(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    sender = wa_id()
    first, second, third = unique("wamid."), unique("wamid."), unique("wamid.")
    malformed = {**wa_message(sender, second, "text", {"body": "sin fecha"}), "timestamp": "ayer"}
    document = whatsapp(sender, [wa_message(sender, first, "text", {"body": "uno"}), malformed,
                                 wa_message(sender, third, "text", {"body": "tres"})])  # fmt: skip
    assert post(hilo_stack, "whatsapp", document).status == 200
    assert len(inbound_queue.wait_for(provider_message_id=first)) == 1
    assert len(inbound_queue.wait_for(provider_message_id=third)) == 1
    assert inbound_queue.wait_for(timeout=0.3, provider_message_id=second) == []
