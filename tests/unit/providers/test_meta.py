"""Meta (WhatsApp Cloud API, Messenger, Instagram): handshake, X-Hub-Signature-256 and notification → envelopes,
with payloads shaped like developers.facebook.com's webhook references and signatures computed as Meta does."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hilo.local import providers
from shared.errors import Forbidden, HiloError, InvalidInput, PayloadTooLarge, Unauthorized
from shared.models.common import Channel
from shared.models.inbound import InboundEnvelope, InboundKind, QueueMessage, StatusEnvelope
from shared.models.message import (
    ContactPart,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    ReactionPart,
    TextPart,
)
from shared.providers import meta
from shared.settings import Settings
from shared.webhooks import Normalized

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "meta-verify-token"
CONFIGURED = Settings.model_validate({"HILO_META_APP_SECRET": APP_SECRET, "HILO_META_VERIFY_TOKEN": VERIFY_TOKEN})
NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
TS = 1_773_500_000  # seconds, as WhatsApp sends them (a string)
TS_MS = TS * 1000 + 123  # milliseconds, as Messenger and Instagram send them
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
WA_ID = "573001234567"
WAMID = "wamid.HBgMNTczMDAxMjM0NTY3FQIAEhggQjVCMjU2RjNBRUI4RjlDNUQ2QjI3RkM0QTBCQzEyRjgA"
PAGE_ID = "104567891234567"
PSID = "7234567890123456"
IG_ID = "17841400000000000"
IGSID = "6123456789012345"
MID = "m_Xk3BTfJ2k7tqg0N0g2UqYcBqk2zg7oD3Mm5eI2qH9gk1kd0q7GgR2aWq8nHcX1bY2sZ4QxM0vU9eL3tN6pO5rA"


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` as Meta computes it: hex HMAC-SHA256 of the raw body with the app secret."""
    return providers.meta_signature(body, secret)


def encode(document: dict[str, Any]) -> bytes:
    # json.dumps escapes non-ASCII as \u00e1 with lower-case hex: the form Meta signs.
    return json.dumps(document).encode()


def normalized(body: bytes | dict[str, Any], channel: Channel = Channel.WHATSAPP) -> Normalized:
    raw = encode(body) if isinstance(body, dict) else body
    return meta.normalize(meta.parse_notification(raw), channel=channel, correlation_id="req-1", received_at=NOW)


# ------------------------------------------------------------------ WhatsApp payloads


def wa_message(kind: str, content: Any, *, wamid: str = WAMID, sender: str = WA_ID, **extra: Any) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": str(TS), "type": kind, kind: content, **extra}


def wa_value(messages: list[Any] | None = None, statuses: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        **extra,
    }
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Camila Restrepo"}, "wa_id": WA_ID}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return value


def wa(*values: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    changes = [{"field": field, "value": value} for value in values]
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": changes}]}


def wa_one(message: dict[str, Any]) -> InboundEnvelope:
    result = normalized(wa(wa_value([message])))
    assert (result.ignored, result.rejected, result.statuses) == ((), (), ())
    (envelope,) = result.inbound
    return envelope


def wa_status(status: str, *, wamid: str = WAMID, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": status, "timestamp": str(TS), "recipient_id": WA_ID, **extra}


# ------------------------------------------------------------------ Messenger / Instagram payloads


def page_event(
    message: dict[str, Any] | None = None, *, sender: str = PSID, recipient: str = PAGE_ID, **event: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": TS_MS}
    if message is not None:
        base["message"] = message
    return {**base, **event}


def page(*events: dict[str, Any], standby: list[dict[str, Any]] | None = None, obj: str = "page") -> dict[str, Any]:
    entry: dict[str, Any] = {"id": PAGE_ID if obj == "page" else IG_ID, "time": TS_MS, "messaging": list(events)}
    if standby is not None:
        entry = {"id": entry["id"], "time": TS_MS, "standby": standby}
    return {"object": obj, "entry": [entry]}


def page_one(document: dict[str, Any], channel: Channel = Channel.MESSENGER) -> InboundEnvelope:
    result = normalized(document, channel)
    assert (result.ignored, result.rejected, result.statuses) == ((), (), ())
    (envelope,) = result.inbound
    return envelope


# ------------------------------------------------------------------ handshake


def test_the_handshake_echoes_the_challenge() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    assert meta.verify_handshake(query, CONFIGURED) == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        None,
        {},
        {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": "meta-verify-token-2", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN.upper(), "hub.challenge": "1158201444"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
        {"hub_mode": "subscribe", "hub_verify_token": VERIFY_TOKEN, "hub_challenge": "1158201444"},
    ],
)
def test_a_wrong_token_or_mode_is_forbidden(query: dict[str, str] | None) -> None:
    with pytest.raises(Forbidden):
        meta.verify_handshake(query, CONFIGURED)


def test_without_a_verify_token_every_handshake_is_forbidden_and_says_what_to_set() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    with pytest.raises(Forbidden, match="HILO_META_VERIFY_TOKEN"):
        meta.verify_handshake(query, Settings())


@pytest.mark.parametrize("challenge", [None, "", "a b", "x" * 257])
def test_a_matching_token_with_a_missing_or_odd_challenge_is_invalid(challenge: str | None) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
    if challenge is not None:
        query["hub.challenge"] = challenge
    with pytest.raises(InvalidInput):
        meta.verify_handshake(query, CONFIGURED)


# ------------------------------------------------------------------ signature


def event(body: bytes, signature: str | None, *, base64_encoded: bool = False) -> APIGatewayProxyEventV2:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "routeKey": "POST /webhooks/whatsapp",
            "rawPath": "/webhooks/whatsapp",
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {"http": {"method": "POST", "path": "/webhooks/whatsapp"}, "requestId": "req-1"},
            "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
            "isBase64Encoded": base64_encoded,
        }
    )


# Meta's own bytes: non-ASCII escaped as \u00xx (lower-case hex), exactly as signed.
SPANISH_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":'
    b'"106540352242922"},"contacts":[{"profile":{"name":"Mar\\u00eda Jos\\u00e9"},"wa_id":"573001234567"}],'
    b'"messages":[{"from":"573001234567","id":"wamid.HBgMNTczMDAxMjM0NTY3FQIAEhgUM0E1","timestamp":"1773500000",'
    b'"text":{"body":"\\u00a1Hola! \\u00bfTienen env\\u00edos a Medell\\u00edn? \\ud83d\\ude4f"},"type":"text"}]},'
    b'"field":"messages"}]}]}'
)


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_the_signature_is_checked_over_the_escaped_bytes_meta_sent(base64_encoded: bool) -> None:
    # When
    body = meta.verify_request(event(SPANISH_BODY, sign(SPANISH_BODY), base64_encoded=base64_encoded), CONFIGURED)
    # Then the bytes are the ones received, and the text is decoded from its escapes
    assert body == SPANISH_BODY
    (envelope,) = normalized(body).inbound
    assert envelope.parts == (TextPart(text="¡Hola! ¿Tienen envíos a Medellín? 🙏"),)
    assert envelope.sender.name == "María José"


def test_a_signature_over_the_re_serialised_json_does_not_verify() -> None:
    # Given what a parser that re-serialises would sign: the same document with raw UTF-8
    reserialised = json.dumps(json.loads(SPANISH_BODY), ensure_ascii=False).encode()
    # Then it is not what Meta signed
    with pytest.raises(Unauthorized):
        meta.verify_request(event(SPANISH_BODY, sign(reserialised)), CONFIGURED)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(SPANISH_BODY, "another-app-secret"),
        sign(SPANISH_BODY + b" "),
        sign(SPANISH_BODY).removeprefix("sha256="),
        "sha1=" + hmac.new(APP_SECRET.encode(), SPANISH_BODY, hashlib.sha1).hexdigest(),
        sign(SPANISH_BODY)[:-1],
        "sha256=",
        "sha256=ñ",
    ],
)
def test_a_missing_or_wrong_signature_is_unauthorized(signature: str | None) -> None:
    with pytest.raises(Unauthorized):
        meta.verify_request(event(SPANISH_BODY, signature), CONFIGURED)


def test_an_upper_case_hex_signature_is_the_same_signature() -> None:
    assert meta.verify_request(event(SPANISH_BODY, sign(SPANISH_BODY).upper().replace("SHA256", "sha256")), CONFIGURED)


def test_without_an_app_secret_nothing_is_accepted_and_the_error_says_what_to_set() -> None:
    with pytest.raises(Forbidden, match="HILO_META_APP_SECRET"):
        meta.verify_request(event(SPANISH_BODY, sign(SPANISH_BODY)), Settings())


def test_a_body_over_the_limit_is_too_large_before_anything_else() -> None:
    body = b" " * (meta.MAX_BODY_BYTES + 1)
    with pytest.raises(PayloadTooLarge):
        meta.verify_request(event(body, sign(body)), CONFIGURED)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=63))
def test_only_the_exact_hmac_verifies(body: bytes, secret: str, flip: int) -> None:
    good = sign(body, secret)
    meta.verify_signature(body, good, secret)
    hex_digits = good.removeprefix("sha256=")
    other = "0" if hex_digits[flip] != "0" else "1"
    with pytest.raises(Unauthorized):
        meta.verify_signature(body, "sha256=" + hex_digits[:flip] + other + hex_digits[flip + 1 :], secret)


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "body",
    [b"", b"no soy json", b"\xff\xfe", b"[]", b'"hola"', b"{}", b'{"object": "page"}', b'{"entry": []}',
     b'{"object": 1, "entry": []}', b'{"object": "page", "entry": {}}', b"[" * 100_000,
     b'{"a": 1' + b"0" * 5000 + b"}"],
)  # fmt: skip
def test_a_body_that_is_not_a_notification_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        meta.parse_notification(body)


@pytest.mark.parametrize(
    ("channel", "obj"),
    [(Channel.WHATSAPP, "page"), (Channel.MESSENGER, "instagram"), (Channel.INSTAGRAM, "whatsapp_business_account"),
     (Channel.MESSENGER, "permissions")],
)  # fmt: skip
def test_an_object_the_endpoint_does_not_serve_is_ignored_with_a_reason(channel: Channel, obj: str) -> None:
    result = normalized({"object": obj, "entry": [{"id": "1", "time": TS_MS, "changes": []}]}, channel)
    assert (result.inbound, result.statuses, result.rejected) == ((), (), ())
    (reason,) = result.ignored
    assert obj in reason


# ------------------------------------------------------------------ WhatsApp messages


def test_a_whatsapp_text_becomes_one_envelope_from_the_e164_wa_id() -> None:
    # When
    envelope = wa_one(wa_message("text", {"body": "Hola, ¿tienen la talla 38 en azul?"}))
    # Then
    assert (envelope.kind, envelope.channel, envelope.provider) == (InboundKind.MESSAGE, "whatsapp", "meta")
    assert envelope.provider_message_id == WAMID
    assert envelope.sender.value == "+573001234567"
    assert envelope.sender.name == "Camila Restrepo"
    assert envelope.recipient.value == PHONE_NUMBER_ID
    assert envelope.occurred_at == datetime.fromtimestamp(TS, UTC)
    assert envelope.received_at == NOW
    assert envelope.correlation_id == "req-1"
    assert envelope.parts == (TextPart(text="Hola, ¿tienen la talla 38 en azul?"),)
    assert envelope.metadata == {"waba_id": WABA_ID, "display_phone_number": "15550783881", "message_type": "text"}
    assert envelope.group_id == "whatsapp:+573001234567"


def test_the_same_notification_twice_gives_identical_envelopes() -> None:
    body = encode(wa(wa_value([wa_message("text", {"body": "¿Hacen envíos a Cali?"})])))
    assert normalized(body) == normalized(body)


@pytest.mark.parametrize(
    ("kind", "content", "expected", "extra"),
    [
        ("image", {"caption": "Así llegó la caja", "mime_type": "image/jpeg", "sha256": "IQ7x1LvQ3d0=",
                   "id": "1479537139650973"},
         MediaPart(provider_media_id="1479537139650973", mime_type="image/jpeg", caption="Así llegó la caja"),
         {"media_sha256": "IQ7x1LvQ3d0="}),
        ("document", {"caption": "Factura", "filename": "factura_0231.pdf", "mime_type": "application/pdf",
                      "sha256": "abc=", "id": "2345"},
         MediaPart(provider_media_id="2345", mime_type="application/pdf", caption="Factura",
                   filename="factura_0231.pdf"),
         {"media_sha256": "abc="}),
        ("audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "def=", "id": "3456", "voice": True},
         MediaPart(provider_media_id="3456", mime_type="audio/ogg; codecs=opus"), {"media_sha256": "def=",
                                                                                 "voice": "true"}),
        ("video", {"mime_type": "video/mp4", "id": "4567"}, MediaPart(provider_media_id="4567", mime_type="video/mp4"),
         {}),
        ("sticker", {"mime_type": "image/webp", "sha256": "ghi=", "id": "5678", "animated": True},
         MediaPart(provider_media_id="5678", mime_type="image/webp"), {"media_sha256": "ghi=", "animated": "true"}),
        ("image", {"id": "6789", "mime_type": "not a mime"},
         MediaPart(provider_media_id="6789", mime_type="image/jpeg"),
         {}),
    ],
)  # fmt: skip
def test_whatsapp_media_keeps_its_media_id_mime_type_caption_and_filename(
    kind: str, content: dict[str, Any], expected: MediaPart, extra: dict[str, str]
) -> None:
    envelope = wa_one(wa_message(kind, content))
    assert envelope.parts == (expected,)
    assert envelope.metadata == {"waba_id": WABA_ID, "display_phone_number": "15550783881", "message_type": kind,
                                 **extra}  # fmt: skip


def test_a_whatsapp_location_keeps_its_name_and_address() -> None:
    location = {"latitude": 6.2442, "longitude": -75.5812, "name": "Tienda El Poblado", "address": "Cra. 43A #7-50"}
    envelope = wa_one(wa_message("location", location))
    assert envelope.parts == (
        LocationPart(latitude=6.2442, longitude=-75.5812, name="Tienda El Poblado", address="Cra. 43A #7-50"),
    )


def test_whatsapp_contact_cards_keep_phones_and_emails_as_written() -> None:
    cards = [
        {"name": {"formatted_name": "Lucía Fernández", "first_name": "Lucía", "last_name": "Fernández"},
         "phones": [{"phone": "+54 9 11 2345-6789", "wa_id": "5491123456789", "type": "CELL"}, {"wa_id": "5491100"}],
         "emails": [{"email": "lucia@example.com", "type": "WORK"}]},
        {"name": {"first_name": "Pedro"}, "phones": []},
    ]  # fmt: skip
    envelope = wa_one(wa_message("contacts", cards))
    assert envelope.parts == (
        ContactPart(name="Lucía Fernández", phones=("+54 9 11 2345-6789", "+5491100"), emails=("lucia@example.com",)),
        ContactPart(name="Pedro"),
    )


@pytest.mark.parametrize(
    ("interactive", "expected"),
    [
        ({"type": "button_reply", "button_reply": {"id": "confirmar_cita", "title": "Sí, confirmo"}},
         InteractiveReplyPart(reply_id="confirmar_cita", title="Sí, confirmo", kind="button")),
        ({"type": "list_reply", "list_reply": {"id": "talla_38", "title": "Talla 38", "description": "Azul"}},
         InteractiveReplyPart(reply_id="talla_38", title="Talla 38", kind="list")),
    ],
)  # fmt: skip
def test_whatsapp_button_and_list_replies_become_interactive_replies(
    interactive: dict[str, Any], expected: InteractiveReplyPart
) -> None:
    envelope = wa_one(wa_message("interactive", interactive, context={"from": "15550783881", "id": "wamid.OURS"}))
    assert envelope.parts == (expected,)
    assert envelope.in_reply_to == "wamid.OURS"
    assert envelope.metadata["interactive_type"] == interactive["type"]


def test_a_template_quick_reply_button_becomes_a_button_reply() -> None:
    envelope = wa_one(wa_message("button", {"payload": "CANCELAR_CITA", "text": "Cancelar cita"}))
    assert envelope.parts == (InteractiveReplyPart(reply_id="CANCELAR_CITA", title="Cancelar cita", kind="button"),)


@pytest.mark.parametrize(("emoji", "expected"), [("❤️", "❤️"), (None, "")])
def test_a_whatsapp_reaction_and_its_removal(emoji: str | None, expected: str) -> None:
    reaction: dict[str, Any] = {"message_id": "wamid.OURS"}
    if emoji is not None:
        reaction["emoji"] = emoji
    envelope = wa_one(wa_message("reaction", reaction))
    assert envelope.parts == (ReactionPart(emoji=expected, target_message_id="wamid.OURS"),)


def test_a_click_to_whatsapp_referral_and_a_forwarded_reply_travel_in_metadata() -> None:
    referral = {"source_url": "https://fb.me/3cr4Wqqkv", "source_id": "120212345", "source_type": "ad",
                "headline": "Zapatos 2x1", "body": "Solo hoy", "media_type": "image",
                "image_url": "https://scontent.xx.fbcdn.net/a.jpg", "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ"}  # fmt: skip
    context = {"from": "15550783881", "id": "wamid.OURS", "forwarded": True}
    envelope = wa_one(wa_message("text", {"body": "Quiero la promo"}, referral=referral, context=context))
    assert envelope.in_reply_to == "wamid.OURS"
    assert envelope.metadata == {
        "waba_id": WABA_ID, "display_phone_number": "15550783881", "message_type": "text", "forwarded": "true",
        "referral_source_type": "ad", "referral_source_id": "120212345", "referral_source_url": "https://fb.me/3cr4Wqqkv",
        "referral_headline": "Zapatos 2x1", "referral_media_type": "image",
        "referral_ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
    }  # fmt: skip


def test_a_product_inquiry_names_the_product() -> None:
    context = {"from": "15550783881", "id": "wamid.CATALOG",
               "referred_product": {"catalog_id": "918273", "product_retailer_id": "SKU-38-AZUL"}}  # fmt: skip
    envelope = wa_one(wa_message("text", {"body": "¿Hay en 38?"}, context=context))
    assert (envelope.metadata["product_catalog_id"], envelope.metadata["product_retailer_id"]) == (
        "918273",
        "SKU-38-AZUL",
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"from": WA_ID, "id": WAMID, "timestamp": str(TS), "type": "unsupported",
          "errors": [{"code": 131051, "title": "Message type unknown", "error_data": {"details": "not supported"}}]},
         "code 131051"),
        (wa_message("order", {"catalog_id": "1", "product_items": []}), "'order' is not handled"),
        (wa_message("system", {"body": "cambió de número", "type": "customer_changed_number"}), "'system'"),
        (wa_message("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}), "nfm_reply"),
        (wa_message("text", {"body": "   "}), "without content"),
        (wa_message("button", {}), "without content"),
    ],
)  # fmt: skip
def test_whatsapp_messages_hilo_does_not_handle_are_ignored_with_a_reason(message: dict[str, Any], reason: str) -> None:
    result = normalized(wa(wa_value([message])))
    assert (result.inbound, result.rejected) == ((), ())
    (ignored,) = result.ignored
    assert reason in ignored
    assert WAMID in ignored


# ------------------------------------------------------------------ WhatsApp statuses


@pytest.mark.parametrize(
    ("wire", "expected"), [("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("played", "read")]
)
def test_whatsapp_statuses_go_to_the_status_queue(wire: str, expected: str) -> None:
    status = wa_status(wire, conversation={"id": "CONV", "origin": {"type": "service"}},
                       pricing={"billable": True, "pricing_model": "CBP", "category": "service"})  # fmt: skip
    result = normalized(wa(wa_value(statuses=[status])))
    assert (result.inbound, result.ignored, result.rejected) == ((), (), ())
    (envelope,) = result.statuses
    assert (envelope.channel, envelope.provider, envelope.provider_message_id) == ("whatsapp", "meta", WAMID)
    assert envelope.status == expected
    assert envelope.recipient is not None
    assert envelope.recipient.value == "+573001234567"
    assert envelope.occurred_at == datetime.fromtimestamp(TS, UTC)
    assert (envelope.error_code, envelope.error_reason) == (None, None)
    assert envelope.dedup_id == f"{WAMID}:{expected}"


def test_a_failed_whatsapp_status_keeps_its_error_code_and_reason() -> None:
    errors = [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
               "error_data": {"details": "Message failed to send because more than 24 hours have passed since the "
                                         "customer last replied to this number."},
               "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]  # fmt: skip
    (envelope,) = normalized(wa(wa_value(statuses=[wa_status("failed", errors=errors)]))).statuses
    assert (envelope.status, envelope.error_code) == ("failed", "131047")
    assert envelope.error_reason is not None
    assert envelope.error_reason.startswith("Re-engagement message: Message failed to send because more than 24 hours")


def test_a_status_that_is_not_delivery_progress_is_ignored() -> None:
    result = normalized(wa(wa_value(statuses=[wa_status("deleted")])))
    assert result.statuses == ()
    assert "'deleted'" in result.ignored[0]


# ------------------------------------------------------------------ WhatsApp: many items, partial failure


def test_many_entries_changes_messages_and_statuses_in_one_notification() -> None:
    # Given two entries; the first with two changes (two messages; a status), the second with a status and a message
    first = wa(
        wa_value([wa_message("text", {"body": "uno"}, wamid="wamid.A1"),
                  wa_message("text", {"body": "dos"}, wamid="wamid.A2", sender="5215512345678")]),
        wa_value(statuses=[wa_status("delivered", wamid="wamid.OURS1")]),
    )  # fmt: skip
    second = wa(wa_value([wa_message("reaction", {"message_id": "wamid.OURS1", "emoji": "👍"}, wamid="wamid.B1")],
                         statuses=[wa_status("read", wamid="wamid.OURS1")]))  # fmt: skip
    document = {"object": "whatsapp_business_account", "entry": first["entry"] + second["entry"]}
    # When
    result = normalized(document)
    # Then everything arrives, in order
    assert [envelope.provider_message_id for envelope in result.inbound] == ["wamid.A1", "wamid.A2", "wamid.B1"]
    assert [envelope.sender.value for envelope in result.inbound] == ["+573001234567", "+5215512345678",
                                                                       "+573001234567"]  # fmt: skip
    assert result.inbound[1].sender.name is None  # no contact for that wa_id
    assert [(status.provider_message_id, status.status) for status in result.statuses] == [
        ("wamid.OURS1", "delivered"),
        ("wamid.OURS1", "read"),
    ]


def test_three_messages_with_one_malformed_enqueue_the_two_good_ones() -> None:
    # Given three messages, the second without an id
    bad = wa_message("text", {"body": "Mi cédula es 1020304050"}, wamid="x")
    del bad["id"]
    messages = [wa_message("text", {"body": "uno"}, wamid="wamid.G1"), bad,
                wa_message("text", {"body": "tres"}, wamid="wamid.G3")]  # fmt: skip
    # When
    result = normalized(wa(wa_value(messages)))
    # Then the good ones go and the bad one is named by position, never by its content or sender
    assert [envelope.provider_message_id for envelope in result.inbound] == ["wamid.G1", "wamid.G3"]
    (rejected,) = result.rejected
    assert "message 1" in rejected
    assert "id" in rejected
    assert "1020304050" not in rejected
    assert WA_ID not in rejected


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        wa_message("text", {"body": "x"}, wamid="wamid.BAD", sender="Camila"),
        {**wa_message("text", {"body": "x"}, wamid="wamid.BAD"), "timestamp": "ayer"},
        {**wa_message("text", {"body": "x"}, wamid="wamid.BAD"), "timestamp": str(10**20)},
        wa_message("location", {"latitude": 123.0, "longitude": 0}, wamid="wamid.BAD"),
        wa_message("image", {"caption": "sin id"}, wamid="wamid.BAD"),
        wa_message("text", {"body": "\ud83d"}, wamid="wamid.BAD"),  # a lone surrogate the queue could not carry
        wa_message("reaction", {"emoji": "👍"}, wamid="wamid.BAD"),
        wa_message("text", {"body": "x"}, wamid="wamid with spaces"),
    ],
)
def test_each_kind_of_malformed_message_is_rejected_alone(bad: Any) -> None:
    good = wa_message("text", {"body": "hola"}, wamid="wamid.GOOD")
    result = normalized(wa(wa_value([good, bad])))
    assert [envelope.provider_message_id for envelope in result.inbound] == ["wamid.GOOD"]
    assert len(result.rejected) == 1
    assert result.rejected[0].startswith("entry 0 change 0 message 1")


def test_value_level_errors_and_other_fields_are_ignored_and_messages_without_metadata_rejected() -> None:
    errors = [{"code": 131000, "title": "Something went wrong", "message": "Something went wrong"}]
    no_metadata = {"messaging_product": "whatsapp", "messages": [wa_message("text", {"body": "hola"})],
                   "statuses": [wa_status("sent")]}  # fmt: skip
    document = wa(wa_value(errors=errors), no_metadata)
    document["entry"][0]["changes"].append({"field": "message_template_status_update", "value": {"event": "APPROVED"}})
    result = normalized(document)
    assert result.inbound == ()
    assert [status.status for status in result.statuses] == ["sent"]  # statuses need no metadata
    assert result.ignored == (
        "entry 0 change 0: error reported by Meta (code 131000)",
        "entry 0 change 2: field 'message_template_status_update' is not handled",
    )
    assert result.rejected == ("entry 0 change 1: 1 message(s) without a valid metadata.phone_number_id",)


# ------------------------------------------------------------------ Messenger


def test_a_messenger_text_becomes_one_envelope_from_the_psid() -> None:
    envelope = page_one(page(page_event({"mid": MID, "text": "Hola, quiero cambiar mi pedido"})))
    assert (envelope.kind, envelope.channel, envelope.provider) == ("message", "messenger", "meta")
    assert envelope.provider_message_id == MID
    assert (envelope.sender.value, envelope.sender.name, envelope.recipient.value) == (PSID, None, PAGE_ID)
    assert envelope.occurred_at == datetime.fromtimestamp(TS_MS / 1000, UTC)
    assert envelope.parts == (TextPart(text="Hola, quiero cambiar mi pedido"),)
    assert envelope.metadata == {}
    assert envelope.group_id == f"messenger:{PSID}"


def test_a_quick_reply_is_a_button_reply_without_repeating_its_title_as_text() -> None:
    message = {"mid": MID, "text": "Talla 38", "quick_reply": {"payload": "TALLA_38"}}
    envelope = page_one(page(page_event(message)))
    assert envelope.parts == (InteractiveReplyPart(reply_id="TALLA_38", title="Talla 38", kind="button"),)


def test_messenger_attachments_become_media_location_and_link_parts() -> None:
    attachments = [
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1.15752-9/4471_n.jpg?_nc_cat=1&oh=a"}},
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t39.1997-6/851_n.png?x=1",
                                      "sticker_id": 369239263222822}},
        {"type": "audio", "payload": {"url": "https://cdn.fbsbx.com/v/t59.3654-21/audioclip-17735?dl=1"}},
        {"type": "video", "payload": {"url": "https://video.xx.fbcdn.net/v/t42.3356-2/10000000_n.mp4?a=1"}},
        {"type": "file", "payload": {"url": "https://cdn.fbsbx.com/v/t59.2708-21/factura.pdf?dl=1"}},
        {"type": "location", "title": "Tienda Centro", "payload": {"coordinates": {"lat": 4.6097, "long": -74.0817}}},
        {"type": "fallback", "title": "Catálogo", "url": "https://tienda.example.com/catalogo", "payload": None},
        {"type": "template", "payload": {"template_type": "generic"}},
    ]  # fmt: skip
    envelope = page_one(page(page_event({"mid": MID, "text": "Mira", "attachments": attachments})))
    assert envelope.parts == (
        TextPart(text="Mira"),
        MediaPart(url=attachments[0]["payload"]["url"], mime_type="image/jpeg"),
        MediaPart(url=attachments[1]["payload"]["url"], mime_type="image/png"),
        MediaPart(url=attachments[2]["payload"]["url"], mime_type="audio/mp4"),
        MediaPart(url=attachments[3]["payload"]["url"], mime_type="video/mp4"),
        MediaPart(url=attachments[4]["payload"]["url"], mime_type="application/pdf"),
        LocationPart(latitude=4.6097, longitude=-74.0817, name="Tienda Centro"),
        TextPart(text="Catálogo\nhttps://tienda.example.com/catalogo"),
    )
    assert envelope.metadata == {
        "attachment_types": "image,image,audio,video,file,location,fallback,template",
        "sticker_id": "369239263222822",
    }


def test_an_attachment_that_does_not_fit_is_rejected_and_the_text_still_goes() -> None:
    message = {"mid": MID, "text": "Mira esto", "attachments": [{"type": "image", "payload": {"url": "ftp://x/a"}}]}
    result = normalized(page(page_event(message)), Channel.MESSENGER)
    (envelope,) = result.inbound
    assert envelope.parts == (TextPart(text="Mira esto"),)
    assert result.rejected == (f"message {MID}: attachment 0 does not fit the envelope",)


def test_a_reply_names_the_message_it_answers() -> None:
    envelope = page_one(page(page_event({"mid": MID, "text": "Esa sí", "reply_to": {"mid": "m_OURS"}})))
    assert envelope.in_reply_to == "m_OURS"


@pytest.mark.parametrize(
    ("postback_mid", "expected_id"), [("m_POSTBACK", "m_POSTBACK"), (None, f"postback:{PSID}:{TS_MS}")]
)
def test_a_postback_becomes_a_button_reply(postback_mid: str | None, expected_id: str) -> None:
    postback: dict[str, Any] = {"title": "Hablar con un asesor", "payload": "ASESOR",
                                "referral": {"ref": "campana_mayo", "source": "SHORTLINK",
                                             "type": "OPEN_THREAD"}}  # fmt: skip
    if postback_mid is not None:
        postback["mid"] = postback_mid
    envelope = page_one(page(page_event(postback=postback)))
    assert envelope.provider_message_id == expected_id
    assert envelope.parts == (InteractiveReplyPart(reply_id="ASESOR", title="Hablar con un asesor", kind="button"),)
    assert envelope.metadata == {"event": "postback", "referral_ref": "campana_mayo", "referral_source": "SHORTLINK",
                                 "referral_type": "OPEN_THREAD"}  # fmt: skip


@pytest.mark.parametrize(("action", "emoji"), [("react", "😮"), ("unreact", "")])
def test_a_messenger_reaction_and_its_removal(action: str, emoji: str) -> None:
    reaction = {"reaction": "wow", "emoji": "😮", "action": action, "mid": "m_OURS"}
    envelope = page_one(page(page_event(reaction=reaction)))
    assert envelope.provider_message_id == f"reaction:m_OURS:{action}:{TS_MS}"
    assert envelope.parts == (ReactionPart(emoji=emoji, target_message_id="m_OURS"),)


def test_an_edit_is_its_own_event_pointing_at_the_original() -> None:
    envelope = page_one(page(page_event(message_edit={"mid": MID, "text": "Talla 39, perdón", "num_edit": 1})))
    assert envelope.kind == InboundKind.MESSAGE_EDITED
    assert envelope.provider_message_id == f"{MID}:edit:1"
    assert envelope.metadata == {"edited_message_id": MID}


def test_an_echo_is_our_outbound_with_the_customer_as_sender() -> None:
    # Given the page's own message, sent by an agent from Meta's inbox (Messenger echoes it)
    echo = {"mid": "m_ECHO", "text": "Hola Camila, ya revisamos tu pedido", "is_echo": True,
            "app_id": 263902037430900, "metadata": "hilo:msg_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}  # fmt: skip
    # When
    envelope = page_one(page(page_event(echo, sender=PAGE_ID, recipient=PSID)))
    # Then it is never a customer message, and it keeps its place in the customer's FIFO group
    assert envelope.kind == InboundKind.ECHO
    assert (envelope.sender.value, envelope.recipient.value) == (PSID, PAGE_ID)
    assert envelope.group_id == f"messenger:{PSID}"
    assert envelope.metadata == {"app_id": "263902037430900", "echo_metadata": "hilo:msg_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"}
    # And the queue contract carries the new kind
    assert QueueMessage.parse(envelope.model_dump_json()) == envelope


def test_delivery_receipts_with_mids_become_statuses_and_watermarks_alone_are_ignored() -> None:
    delivered = page_event(delivery={"mids": ["m_OURS1", "m_OURS2"], "watermark": TS_MS})
    watermark_only = page_event(delivery={"watermark": TS_MS})
    read = page_event(read={"watermark": TS_MS})
    result = normalized(page(delivered, watermark_only, read), Channel.MESSENGER)
    assert [(status.provider_message_id, status.status) for status in result.statuses] == [
        ("m_OURS1", "delivered"),
        ("m_OURS2", "delivered"),
    ]
    assert {status.recipient.value for status in result.statuses if status.recipient} == {PSID}
    assert result.ignored == (
        "entry 0 messaging 1: delivery watermark without mids names no message",
        "entry 0 messaging 2: read watermark names no message",
    )


def test_standby_events_are_messages_marked_as_owned_by_another_app() -> None:
    document = page(standby=[page_event({"mid": MID, "text": "¿Siguen ahí?"})])
    envelope = page_one(document)
    assert envelope.metadata == {"standby": "true"}
    assert envelope.parts == (TextPart(text="¿Siguen ahí?"),)


@pytest.mark.parametrize(
    ("event_fields", "reason"),
    [
        ({"optin": {"type": "notification_messages", "payload": "x"}}, "'optin'"),
        ({"pass_thread_control": {"new_owner_app_id": "123"}}, "'pass_thread_control'"),
        ({"message": {"mid": MID, "is_deleted": True}}, "unsent"),
        ({"message": {"mid": MID, "is_unsupported": True}}, "unsupported"),
        ({"message": {"mid": MID, "attachments": []}}, "without content"),
        ({"postback": {"title": "x", "payload": ""}}, "without payload"),
        ({"message_edit": {"mid": MID, "text": " ", "num_edit": 1}}, "without text"),
        ({}, "'empty'"),
    ],
)
def test_page_events_hilo_does_not_handle_are_ignored_with_a_reason(event_fields: dict[str, Any], reason: str) -> None:
    result = normalized(page(page_event(**event_fields)), Channel.MESSENGER)
    assert (result.inbound, result.statuses, result.rejected) == ((), (), ())
    (ignored,) = result.ignored
    assert reason in ignored


def test_three_page_events_with_one_malformed_enqueue_the_two_good_ones() -> None:
    events = [
        page_event({"mid": "m_1", "text": "uno"}),
        page_event({"text": "sin mid"}),
        page_event({"mid": "m_3", "text": "tres"}),
    ]
    result = normalized(page(*events), Channel.MESSENGER)
    assert [envelope.provider_message_id for envelope in result.inbound] == ["m_1", "m_3"]
    assert result.rejected == ("entry 0 messaging 1: malformed (mid)",)


def test_page_entries_with_changes_are_ignored_and_their_messaging_still_read() -> None:
    document = page(page_event({"mid": MID, "text": "hola"}))
    document["entry"][0]["changes"] = [{"field": "feed", "value": {"item": "comment"}}]
    result = normalized(document, Channel.MESSENGER)
    assert len(result.inbound) == 1
    assert result.ignored == ("entry 0: changes (feed) are not messaging events",)


# ------------------------------------------------------------------ Instagram


def test_an_instagram_message_comes_from_the_igsid() -> None:
    document = page(
        page_event({"mid": MID, "text": "¿Tienen envío gratis?"}, sender=IGSID, recipient=IG_ID), obj="instagram"
    )
    envelope = page_one(document, Channel.INSTAGRAM)
    assert (envelope.channel, envelope.sender.value, envelope.recipient.value) == ("instagram", IGSID, IG_ID)
    assert envelope.group_id == f"instagram:{IGSID}"


def test_instagram_shares_and_story_mentions_are_links_and_story_replies_name_the_story() -> None:
    attachments = [
        {"type": "story_mention", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}},
        {"type": "ig_reel", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2",
                                        "title": "Nuevos modelos", "reel_video_id": "3"}},
        {"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=4"}},
    ]  # fmt: skip
    message = {"mid": MID, "attachments": attachments,
               "reply_to": {"story": {"url": "https://lookaside.fbsbx.com/story", "id": "17900000000"}}}  # fmt: skip
    envelope = page_one(page(page_event(message, sender=IGSID, recipient=IG_ID), obj="instagram"), Channel.INSTAGRAM)
    assert envelope.parts == (
        TextPart(text="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"),
        TextPart(text="Nuevos modelos\nhttps://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2"),
        MediaPart(url="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=4", mime_type="image/jpeg"),
    )
    assert envelope.in_reply_to is None
    assert envelope.metadata["reply_to_story_id"] == "17900000000"


def test_an_instagram_read_names_the_message_and_becomes_a_read_status() -> None:
    document = page(page_event(read={"mid": "m_OURS"}, sender=IGSID, recipient=IG_ID), obj="instagram")
    (status,) = normalized(document, Channel.INSTAGRAM).statuses
    assert isinstance(status, StatusEnvelope)
    assert (status.channel, status.provider_message_id, status.status) == ("instagram", "m_OURS", "read")
    assert status.recipient is not None
    assert status.recipient.value == IGSID


def test_an_instagram_echo_is_an_echo() -> None:
    echo = {"mid": "m_ECHO", "text": "¡Gracias por escribirnos!", "is_echo": True}
    document = page(page_event(echo, sender=IG_ID, recipient=IGSID), obj="instagram")
    envelope = page_one(document, Channel.INSTAGRAM)
    assert (envelope.kind, envelope.sender.value) == (InboundKind.ECHO, IGSID)


# ------------------------------------------------------------------ property: malformed input never escapes


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)
_keys = st.sampled_from(
    ["object", "entry", "id", "time", "changes", "field", "value", "metadata", "phone_number_id", "contacts",
     "messages", "statuses", "errors", "from", "timestamp", "type", "text", "body", "image", "mime_type", "location",
     "latitude", "interactive", "button_reply", "reaction", "emoji", "status", "recipient_id", "messaging", "standby",
     "sender", "recipient", "message", "mid", "attachments", "payload", "url", "quick_reply", "postback", "delivery",
     "mids", "read", "is_echo", "reply_to", "context", "referral", "message_edit", "code"]
)  # fmt: skip
_metaish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["text", "image", "page", "1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=30,
)

REAL_DOCUMENTS = [
    json.loads(SPANISH_BODY),
    wa(wa_value([wa_message("image", {"id": "1", "mime_type": "image/jpeg", "caption": "c"}),
                 wa_message("interactive", {"type": "list_reply", "list_reply": {"id": "a", "title": "b"}}),
                 wa_message("contacts", [{"name": {"formatted_name": "X"}, "phones": [{"phone": "+1"}]}]),
                 wa_message("location", {"latitude": 1, "longitude": 2})],
                statuses=[wa_status("failed", errors=[{"code": 131026, "title": "t"}])])),
    page(page_event({"mid": "m_1", "text": "a", "attachments": [{"type": "image", "payload": {"url": "https://a/b.jpg"}}],
                     "reply_to": {"mid": "m_0"}}),
         page_event(postback={"payload": "P", "title": "T", "mid": "m_2"}),
         page_event(reaction={"mid": "m_1", "action": "react", "emoji": "x"}),
         page_event(delivery={"mids": ["m_9"], "watermark": 1}),
         page_event({"mid": "m_3", "text": "e", "is_echo": True}, sender=PAGE_ID, recipient=PSID)),
    page(page_event(read={"mid": "m_1"}), obj="instagram"),
]  # fmt: skip


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real notification with a few nodes below the top level replaced by random JSON or deleted."""
    document = copy.deepcopy(draw(st.sampled_from(REAL_DOCUMENTS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [path for path in _paths(document) if len(path) > 1]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_metaish)
    return document


def _check(body: bytes, channel: Channel, own_channel: bool) -> None:
    if own_channel:  # mostly the endpoint the notification's object belongs to, so its entries are read
        try:
            obj = json.loads(body).get("object")
        except (ValueError, AttributeError, RecursionError):
            obj = None
        channel = next((key for key, value in meta.OBJECT_BY_CHANNEL.items() if value == obj), channel)
    try:
        result = normalized(body, channel)
    except HiloError:
        return
    assert isinstance(result, Normalized)
    for envelope in (*result.inbound, *result.statuses):
        QueueMessage.parse(envelope.model_dump_json())  # what the queue gets is always readable again


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        _json.map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {"object": st.sampled_from(list(meta.OBJECT_BY_CHANNEL.values())), "entry": st.lists(_metaish, max_size=3)}
        ).map(encode),
        _mutated().map(encode),
    ),
    st.sampled_from(list(meta.OBJECT_BY_CHANNEL)),
    st.integers(min_value=0, max_value=9).map(lambda draw: draw > 0),
)
def test_no_body_makes_the_parser_raise_anything_but_a_hilo_error(
    body: bytes, channel: Channel, own_channel: bool
) -> None:
    _check(body, channel, own_channel)


_junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=8),
    st.lists(_json, max_size=2),
    st.dictionaries(_keys.filter(lambda key: key != "id"), _json, max_size=5),  # no id: never a valid message
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _junk), min_size=1, max_size=6))
def test_good_messages_always_go_whatever_junk_sits_beside_them(items: list[tuple[bool, Any]]) -> None:
    # Given good messages interleaved with junk
    messages = [
        wa_message("text", {"body": f"mensaje {index}"}, wamid=f"wamid.P{index}") if good else junk
        for index, (good, junk) in enumerate(items)
    ]
    # When
    result = normalized(wa(wa_value(messages)))
    # Then every good one is enqueued, in order, and every junk item is accounted for
    assert [envelope.provider_message_id for envelope in result.inbound] == [
        f"wamid.P{index}" for index, (good, _) in enumerate(items) if good
    ]
    assert len(result.rejected) + len(result.ignored) == sum(1 for good, _ in items if not good)
