"""Twilio webhooks on the local twin: requests signed as Twilio signs them, over real HTTP, into the queues."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, QueueCollector, http

pytestmark = pytest.mark.stack

TOKEN = TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"]
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
ACCOUNT = "AC" + "0" * 32


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def sign(url: str, pairs: list[tuple[str, str]]) -> str:
    """Twilio's algorithm: URL + sorted name+value pairs, HMAC-SHA1 with the Auth Token, base64."""
    data = url + "".join(name + value for name, value in sorted(pairs))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post(
    stack: LocalStack, path: str, pairs: list[tuple[str, str]], signature: str | None = "sign", query: str = ""
) -> HttpResult:
    url = f"{stack.api_url}{path}" + (f"?{query}" if query else "")
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature == "sign":
        signature = sign(url, pairs)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return http("POST", url, urlencode(pairs), headers)


def sms(message_sid: str, sender: str, **fields: str) -> list[tuple[str, str]]:
    base = {"ToCountry": "MX", "SmsMessageSid": message_sid, "NumMedia": "0", "SmsSid": message_sid,
            "SmsStatus": "received", "Body": "Hola, ¿me ayudan con mi pedido #4411? 2+2", "To": "+525588776655",
            "NumSegments": "1", "MessageSid": message_sid, "AccountSid": ACCOUNT, "From": sender,
            "ApiVersion": "2010-04-01"}  # fmt: skip
    return list({**base, **fields}.items())


def phone() -> str:
    return "+57300" + str(1_000_000 + secrets.randbelow(8_999_999))


def test_an_sms_lands_on_the_inbound_queue_and_twilio_gets_empty_twiml(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given an SMS from a Colombian number, signed with the account's Auth Token
    message_sid, sender = sid("SM"), phone()
    # When Twilio posts it
    response = post(hilo_stack, "/webhooks/twilio/messages", sms(message_sid, sender))
    # Then it gets empty TwiML, and the envelope is on the inbound FIFO queue in the sender's group
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.body.decode() == EMPTY_TWIML
    (body,) = inbound_queue.wait_for(provider_message_id=message_sid)
    assert (body["kind"], body["channel"], body["provider"]) == ("message", "sms", "twilio")
    assert body["sender"] == {"value": sender, "name": None}
    assert body["recipient"] == {"value": "+525588776655", "name": None}
    assert body["parts"] == [{"type": "text", "text": "Hola, ¿me ayudan con mi pedido #4411? 2+2"}]
    assert body["metadata"] == {"account_sid": ACCOUNT, "num_segments": "1"}
    assert body["_attributes"]["MessageGroupId"] == f"sms:{sender}"
    assert body["_attributes"]["MessageDeduplicationId"] == f"twilio:{message_sid}"


def test_whatsapp_via_twilio_with_profile_name_and_media(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    message_sid, sender = sid("MM"), phone()
    media = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/{message_sid}/Media/ME1"
    pairs = sms(message_sid, f"whatsapp:{sender}", To="whatsapp:+14155238886", Body="Foto del recibo",
                ProfileName="Valentina Muñoz", WaId=sender[1:], MessageType="image", NumMedia="1",
                MediaUrl0=media, MediaContentType0="image/jpeg")  # fmt: skip
    assert post(hilo_stack, "/webhooks/twilio/messages", pairs).status == 200
    (body,) = inbound_queue.wait_for(provider_message_id=message_sid)
    assert body["channel"] == "whatsapp"
    assert body["sender"] == {"value": sender, "name": "Valentina Muñoz"}
    assert body["recipient"]["value"] == "+14155238886"
    assert body["parts"][0] == {"type": "text", "text": "Foto del recibo"}
    assert body["parts"][1]["url"] == media
    assert body["parts"][1]["mime_type"] == "image/jpeg"
    assert body["metadata"]["wa_id"] == sender[1:]
    assert body["metadata"]["message_type"] == "image"
    assert body["_attributes"]["MessageGroupId"] == f"whatsapp:{sender}"


def test_a_status_callback_lands_on_the_status_queue(hilo_stack: LocalStack, status_queue: QueueCollector) -> None:
    message_sid = sid("SM")
    pairs = [("SmsSid", message_sid), ("SmsStatus", "undelivered"), ("MessageStatus", "undelivered"),
             ("To", "+5215512345678"), ("MessageSid", message_sid), ("AccountSid", ACCOUNT),
             ("From", "+525588776655"), ("ApiVersion", "2010-04-01"), ("ErrorCode", "30003")]  # fmt: skip
    response = post(hilo_stack, "/webhooks/twilio/status", pairs)
    assert response.status == 200
    assert response.body.decode() == EMPTY_TWIML
    (body,) = status_queue.wait_for(provider_message_id=message_sid)
    assert (body["channel"], body["status"], body["error_code"]) == ("sms", "failed", "30003")
    assert body["recipient"]["value"] == "+5215512345678"


def test_an_unknown_message_status_is_acknowledged_and_ignored(
    hilo_stack: LocalStack, status_queue: QueueCollector
) -> None:
    message_sid = sid("SM")
    pairs = [("MessageSid", message_sid), ("MessageStatus", "received"), ("To", "+525588776655")]
    assert post(hilo_stack, "/webhooks/twilio/status", pairs).status == 200
    assert status_queue.wait_for(timeout=1.0, provider_message_id=message_sid) == []


def test_a_call_is_answered_with_the_ivr_and_the_digits_step_enqueues_the_digits(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given an incoming call
    call_sid, caller = sid("CA"), phone()
    call = [("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", call_sid), ("CallStatus", "ringing"),
            ("Called", "+525588776655"), ("Caller", caller), ("Direction", "inbound"), ("From", caller),
            ("To", "+525588776655")]  # fmt: skip
    # When Twilio asks what to do with it
    response = post(hilo_stack, "/webhooks/twilio/voice", call)
    # Then the answer gathers the ID digits, and the call is on the timeline
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/xml")
    twiml = response.body.decode()
    assert '<Gather input="dtmf" finishOnKey="#" timeout="8" action="voice?step=id" method="POST">' in twiml
    assert "<Enqueue>soporte</Enqueue>" in twiml
    (queued,) = inbound_queue.wait_for(provider_message_id=call_sid)
    assert (queued["kind"], queued["channel"], queued["sender"]["value"]) == ("call", "voice", caller)
    assert queued["call"]["status"] == "ringing"
    assert queued["_attributes"]["MessageGroupId"] == f"voice:{caller}"
    # When Twilio posts the Gather result to the action (resolved against the URL it called, so ?step=id)
    gathered = [*call[:3], ("CallStatus", "in-progress"), *call[4:], ("Digits", "1020304050"), ("FinishedOnKey", "#")]
    response = post(hilo_stack, "/webhooks/twilio/voice", gathered, query="step=id")
    # Then the digits are enqueued and the call is queued for an agent
    assert response.status == 200
    assert response.body.decode().endswith("<Enqueue>soporte</Enqueue></Response>")
    (digits,) = inbound_queue.wait_for(provider_message_id=f"{call_sid}:digits")
    assert digits["call"]["digits"] == "1020304050"


def test_a_completed_call_records_its_duration(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    call_sid, caller = sid("CA"), phone()
    pairs = [("CallSid", call_sid), ("CallStatus", "completed"), ("From", caller), ("To", "+525588776655"),
             ("Direction", "inbound"), ("CallDuration", "125"), ("Timestamp", "Sat, 14 Mar 2026 15:02:03 +0000"),
             ("CallbackSource", "call-progress-events"), ("SequenceNumber", "3")]  # fmt: skip
    response = post(hilo_stack, "/webhooks/twilio/voice/status", pairs)
    assert response.status == 200
    assert response.body.decode() == EMPTY_TWIML
    (body,) = inbound_queue.wait_for(provider_message_id=f"{call_sid}:completed")
    assert body["kind"] == "call_ended"
    assert body["call"]["duration_seconds"] == 125
    assert body["occurred_at"].startswith("2026-03-14T15:02:03")


@pytest.mark.parametrize(
    ("path", "signature"),
    [
        ("/webhooks/twilio/messages", None),
        ("/webhooks/twilio/messages", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("/webhooks/twilio/voice", "bad"),
        ("/webhooks/twilio/voice/status", ""),
    ],
)
def test_a_missing_or_bad_signature_is_403_and_nothing_is_enqueued(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, path: str, signature: str | None
) -> None:
    message_sid = sid("SM")
    pairs = [*sms(message_sid, phone()), ("CallSid", message_sid), ("CallStatus", "completed")]
    response = post(hilo_stack, path, pairs, signature=signature)
    assert response.status == 403
    assert response.json()["error"] == "forbidden"
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=message_sid) == []


def test_a_request_signed_for_another_url_is_403(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    message_sid = sid("SM")
    pairs = sms(message_sid, phone())
    signature = sign(f"{hilo_stack.api_url}/webhooks/twilio/status", pairs)
    assert post(hilo_stack, "/webhooks/twilio/messages", pairs, signature=signature).status == 403
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=message_sid) == []


def test_a_signed_but_malformed_message_is_a_json_400(hilo_stack: LocalStack) -> None:
    response = post(hilo_stack, "/webhooks/twilio/messages", [("Body", "hola"), ("From", phone())])
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"


def test_a_body_over_64_kib_is_413(hilo_stack: LocalStack) -> None:
    response = post(hilo_stack, "/webhooks/twilio/messages", sms(sid("SM"), phone(), Body="a" * 70_000))
    assert response.status == 413
    assert response.json()["error"] == "payload_too_large"


def test_replays_sequential_and_concurrent_enqueue_one_message(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given one message Twilio re-sends (its retries are the same signed request)
    message_sid = sid("SM")
    pairs = sms(message_sid, phone(), Body="¿Me confirman la dirección de entrega?")
    # When it arrives three times in a row, then three times at once
    codes = [post(hilo_stack, "/webhooks/twilio/messages", pairs).status for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        codes += [r.status for r in pool.map(lambda _: post(hilo_stack, "/webhooks/twilio/messages", pairs), range(3))]
    # Then every delivery is acknowledged and the queue holds it once
    assert codes == [200] * 6
    assert len(inbound_queue.wait_for(count=2, timeout=3.0, provider_message_id=message_sid)) == 1


def test_a_json_body_signed_with_body_sha256_verifies(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    # Given a JSON body (sent as text, not base64, by API Gateway) and the URL Twilio calls with its hash
    message_sid, sender = sid("SM"), phone()
    body = json.dumps({"MessageSid": message_sid, "From": sender, "To": "+525588776655", "Body": "¡Hola! ¿Qué tal?",
                       "AccountSid": ACCOUNT}, ensure_ascii=False).encode()  # fmt: skip
    url = f"{hilo_stack.api_url}/webhooks/twilio/messages?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = base64.b64encode(hmac.new(TOKEN.encode(), url.encode(), hashlib.sha1).digest()).decode()
    headers = {"content-type": "application/json", "X-Twilio-Signature": signature}
    # When it is posted, and again with a body that no longer matches the hash
    ok = http("POST", url, body, headers)
    tampered = http("POST", url, body.replace(b"Hola", b"Chao"), headers)
    # Then the first is enqueued, the second is 403
    assert ok.status == 200
    assert tampered.status == 403
    (queued,) = inbound_queue.wait_for(provider_message_id=message_sid)
    assert queued["parts"] == [{"type": "text", "text": "¡Hola! ¿Qué tal?"}]
