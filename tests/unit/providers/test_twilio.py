"""Twilio: X-Twilio-Signature (checked against the official RequestValidator) and Messaging/Voice normalisation,
with requests shaped like twilio.com/docs (messaging webhook request, status callbacks, voice webhooks)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from hilo.local import providers
from shared.errors import Forbidden, HiloError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from shared.models.inbound import InboundKind
from shared.models.message import DeliveryStatus, InteractiveReplyPart, LocationPart, MediaPart, TextPart
from shared.providers import twilio
from shared.settings import settings_from
from shared.webhooks import Normalized

TOKEN = "12345"
NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
BASE = "https://hilo.example.com"
SID = "SM" + "a1" * 16
ACCOUNT = "AC" + "b2" * 16

# An inbound SMS as twilio.com/docs/messaging/guides/webhook-request lists it (Colombian sender, US number).
SMS: list[tuple[str, str]] = [
    ("ToCountry", "US"),
    ("ToState", "FL"),
    ("SmsMessageSid", SID),
    ("NumMedia", "0"),
    ("ToCity", "MIAMI"),
    ("FromZip", ""),
    ("SmsSid", SID),
    ("FromState", ""),
    ("SmsStatus", "received"),
    ("FromCity", ""),
    ("Body", "Hola, ¿a qué hora abren mañana? Necesito cambiar mi pedido #4411 + la factura"),
    ("FromCountry", "CO"),
    ("To", "+13055550123"),
    ("MessagingServiceSid", "MG" + "c3" * 16),
    ("ToZip", "33101"),
    ("NumSegments", "1"),
    ("MessageSid", SID),
    ("AccountSid", ACCOUNT),
    ("From", "+573001234567"),
    ("ApiVersion", "2010-04-01"),
]


def params(pairs: list[tuple[str, str]]) -> twilio.Params:
    parsed, is_json = twilio.parse_params(urlencode(pairs).encode(), "application/x-www-form-urlencoded")
    assert not is_json
    return parsed


def replace(pairs: list[tuple[str, str]], **fields: str) -> list[tuple[str, str]]:
    kept = [(name, value) for name, value in pairs if name not in fields]
    return kept + list(fields.items())


def independent_signature(url: str, pairs: list[tuple[str, str]], token: str = TOKEN) -> str:
    """Twilio's documented algorithm as the provider side computes it (not shared/providers/twilio.py's)."""
    return providers.twilio_signature(url, pairs, token)


def event(
    path: str,
    body: bytes,
    *,
    query: str = "",
    signature: str | None = None,
    content_type: str = "application/x-www-form-urlencoded",
    base64_body: bool = True,
) -> APIGatewayProxyEventV2:
    headers = {"content-type": content_type, "host": "hilo.example.com"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {"http": {"method": "POST", "path": path}, "requestId": "req-1"},
            "body": base64.b64encode(body).decode() if base64_body else body.decode(),
            "isBase64Encoded": base64_body,
        }
    )


def hilo_settings(**overrides: str) -> Any:
    return settings_from({"HILO_TWILIO_AUTH_TOKEN": TOKEN, "HILO_PUBLIC_URL": BASE, **overrides})


# ------------------------------------------------------------------ signature: the algorithm


def test_the_signature_matches_twilios_documented_example() -> None:
    # twilio.com/docs/usage/security: this URL, these parameters and token 12345 sign to this value.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    pairs = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
             ("From", "+12349013030"), ("To", "+18005551212")]  # fmt: skip
    assert twilio.compute_signature(url, params(pairs), TOKEN) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


CROSS_CHECK_CASES = [
    (f"{BASE}/webhooks/twilio/messages", SMS),
    (f"{BASE}/webhooks/twilio/messages?tenant=acme&lang=es", SMS),
    (f"{BASE}/webhooks/twilio/messages", replace(SMS, Body="Señor Muñoz: ¿cuánto cuesta? 100+20 = 120 ✓ ñÑáéíóú")),
    (f"{BASE}/webhooks/twilio/messages", replace(SMS, From="whatsapp:+5215512345678", ProfileName="José Pérez")),
    (f"{BASE}/webhooks/twilio/voice?step=id", [("CallSid", "CA" + "d4" * 16), ("Digits", "1020304050#")]),
    (f"{BASE}/webhooks/twilio/messages", [("MessageSid", SID), ("Tag", "b"), ("Tag", "a"), ("Tag", "c")]),
    (f"{BASE}/webhooks/twilio/messages", [("MessageSid", SID), ("Empty", ""), ("Body", "a+b%20c&d=e")]),
]


@pytest.mark.parametrize(("url", "pairs"), CROSS_CHECK_CASES)
def test_signatures_agree_with_the_official_validator_and_an_independent_computation(
    url: str, pairs: list[tuple[str, str]]
) -> None:
    # Given the body Twilio would post and the official SDK's verdict
    parsed = params(pairs)
    official = RequestValidator(TOKEN)
    multi = _MultiDict(pairs)
    # When Hilo computes the signature
    ours = twilio.compute_signature(url, parsed, TOKEN)
    # Then all three agree, and both validators accept it with and without the default port
    assert ours == official.compute_signature(url, multi) == independent_signature(url, pairs)
    assert official.validate(url, multi, ours)
    twilio.verify_signature(url=url, params=parsed, body=b"", is_json=False, signature=ours, token=TOKEN)
    with_port = url.replace(BASE, BASE + ":443")
    port_signature = twilio.compute_signature(with_port, parsed, TOKEN)
    assert official.validate(url, multi, port_signature)
    twilio.verify_signature(url=url, params=parsed, body=b"", is_json=False, signature=port_signature, token=TOKEN)


class _MultiDict(dict[str, str]):
    """What RequestValidator.get_values expects for repeated names (a Flask-style ``getall``)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def test_repeated_identical_values_verify_whether_or_not_the_signer_deduplicated_them() -> None:
    url = f"{BASE}/webhooks/twilio/messages"
    pairs = [("MessageSid", SID), ("Tag", "a"), ("Tag", "a")]
    official = RequestValidator(TOKEN).compute_signature(url, _MultiDict(pairs))  # sorted(set(values))
    for signature in (official, independent_signature(url, pairs)):
        twilio.verify_signature(
            url=url, params=params(pairs), body=b"", is_json=False, signature=signature, token=TOKEN
        )


def test_an_explicit_default_port_in_the_configured_url_also_verifies_without_it() -> None:
    url = "https://hilo.example.com:443/webhooks/twilio/messages"
    signature = twilio.compute_signature("https://hilo.example.com/webhooks/twilio/messages", params(SMS), TOKEN)
    twilio.verify_signature(url=url, params=params(SMS), body=b"", is_json=False, signature=signature, token=TOKEN)
    assert twilio.url_variants("http://127.0.0.1:3000/x") == ("http://127.0.0.1:3000/x",)
    assert twilio.url_variants("http://h.example/x?a=1") == ("http://h.example/x?a=1", "http://h.example:80/x?a=1")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url, pairs: (url, replace(pairs, Body="Hola, transfiera todo")),  # changed value
        lambda url, pairs: (url, [*pairs, ("Extra", "1")]),  # added parameter: never a whitelist
        lambda url, pairs: (url, pairs[1:]),  # dropped parameter
        lambda url, pairs: (url + "?tenant=otro", pairs),  # different query
        lambda url, pairs: (url.replace("https", "http"), pairs),  # different scheme
        lambda url, pairs: (url.replace("messages", "status"), pairs),  # different path
    ],
)
def test_any_change_to_url_or_parameters_breaks_the_signature(tamper: Any) -> None:
    url = f"{BASE}/webhooks/twilio/messages"
    signature = twilio.compute_signature(url, params(SMS), TOKEN)
    new_url, new_pairs = tamper(url, SMS)
    with pytest.raises(Forbidden):
        twilio.verify_signature(
            url=new_url, params=params(new_pairs), body=b"", is_json=False, signature=signature, token=TOKEN
        )


@pytest.mark.parametrize("signature", [None, "", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "not base64 at all"])
def test_a_missing_or_wrong_signature_is_forbidden(signature: str | None) -> None:
    with pytest.raises(Forbidden):
        twilio.verify_signature(
            url=f"{BASE}/x", params=params(SMS), body=b"", is_json=False, signature=signature, token=TOKEN
        )


def test_a_signature_made_with_another_token_is_forbidden() -> None:
    url = f"{BASE}/webhooks/twilio/messages"
    with pytest.raises(Forbidden):
        twilio.verify_signature(
            url=url, params=params(SMS), body=b"", is_json=False, signature=independent_signature(url, SMS, "otro"),
            token=TOKEN,
        )  # fmt: skip


def test_a_json_body_is_signed_through_body_sha256_in_the_url() -> None:
    # Given a JSON body and the URL Twilio calls with its hash
    body = json.dumps({"MessageSid": SID, "Body": "¡Hola! ¿Qué tal?"}, ensure_ascii=False).encode()
    url = f"{BASE}/webhooks/twilio/messages?bodySHA256={hashlib.sha256(body).hexdigest()}"
    official = RequestValidator(TOKEN)
    signature = official.compute_signature(url, {})
    assert official.validate(url, body.decode(), signature)
    # Then Hilo accepts it, and refuses the same URL with another body
    twilio.verify_signature(url=url, params={}, body=body, is_json=True, signature=signature, token=TOKEN)
    with pytest.raises(Forbidden, match="bodySHA256"):
        twilio.verify_signature(url=url, params={}, body=body + b" ", is_json=True, signature=signature, token=TOKEN)
    no_hash = f"{BASE}/webhooks/twilio/messages"
    with pytest.raises(Forbidden, match="bodySHA256"):
        twilio.verify_signature(
            url=no_hash, params={}, body=body, is_json=True, signature=official.compute_signature(no_hash, {}),
            token=TOKEN,
        )  # fmt: skip


def test_shared_key_webhooks_name_hmac_sha256_and_unknown_algorithms_are_refused() -> None:
    url = f"{BASE}/webhooks/twilio/messages"
    signature = RequestValidator(TOKEN).compute_signature(url, _MultiDict(SMS), "HMAC_SHA256")
    twilio.verify_signature(
        url=url, params=params(SMS), body=b"", is_json=False, signature=signature, token=TOKEN,
        signature_settings="key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    )  # fmt: skip
    with pytest.raises(Forbidden, match="algorithm"):
        twilio.verify_signature(
            url=url, params=params(SMS), body=b"", is_json=False, signature=signature, token=TOKEN,
            signature_settings="algorithm=HMAC_MD5",
        )  # fmt: skip


# ------------------------------------------------------------------ verify_event: the whole first step


def test_verify_event_accepts_base64_and_plain_bodies() -> None:
    body = urlencode(SMS).encode()
    signature = independent_signature(f"{BASE}/webhooks/twilio/messages?t=1", SMS)
    for encoded in (True, False):
        request = event("/webhooks/twilio/messages", body, query="t=1", signature=signature, base64_body=encoded)
        assert twilio.verify_event(request, hilo_settings())["MessageSid"] == (SID,)


@pytest.mark.parametrize("missing", ["HILO_TWILIO_AUTH_TOKEN", "HILO_PUBLIC_URL"])
def test_verify_event_without_configuration_is_forbidden_and_says_what_to_set(missing: str) -> None:
    body = urlencode(SMS).encode()
    signature = independent_signature(f"{BASE}/webhooks/twilio/messages", SMS)
    with pytest.raises(Forbidden, match="not configured"):
        twilio.verify_event(
            event("/webhooks/twilio/messages", body, signature=signature), hilo_settings(**{missing: ""})
        )


def test_verify_event_rejects_a_body_over_64_kib_before_anything_else() -> None:
    body = urlencode([*SMS, ("Pad", "x" * 70_000)]).encode()
    with pytest.raises(PayloadTooLarge):
        twilio.verify_event(event("/webhooks/twilio/messages", body, signature="x"), hilo_settings())


def test_parse_params_rejects_what_twilio_never_sends() -> None:
    with pytest.raises(InvalidInput, match="UTF-8"):
        twilio.parse_params(b"Body=\xff\xfe", None)
    with pytest.raises(InvalidInput, match="UTF-8"):
        twilio.parse_params(b"Body=%FF", None)
    with pytest.raises(InvalidInput, match="parameters"):
        twilio.parse_params(b"&".join([b"a=1"] * (twilio.MAX_PARAMS + 1)), None)
    with pytest.raises(InvalidInput, match="object"):
        twilio.parse_params(b"[1,2]", "application/json")
    with pytest.raises(UnsupportedMediaType):
        twilio.parse_params(b"x", "multipart/form-data; boundary=x")


def test_parse_params_keeps_blank_values_plus_signs_and_repeated_names() -> None:
    parsed, _ = twilio.parse_params(b"Body=1%2B1+es+2&FromZip=&Tag=b&Tag=a", None)
    assert parsed == {"Body": ("1+1 es 2",), "FromZip": ("",), "Tag": ("b", "a")}


# ------------------------------------------------------------------ messages


def one(pairs: list[tuple[str, str]]) -> Any:
    result = twilio.normalize_message(params(pairs), correlation_id="req-1", now=NOW)
    assert result.ignored == result.rejected == ()
    (envelope,) = result.inbound
    return envelope


def test_an_sms_becomes_an_inbound_envelope() -> None:
    envelope = one(SMS)
    assert envelope.kind == InboundKind.MESSAGE
    assert (envelope.channel, envelope.provider) == ("sms", "twilio")
    assert envelope.provider_message_id == SID
    assert envelope.sender.value == "+573001234567"
    assert envelope.sender.name is None
    assert envelope.recipient.value == "+13055550123"
    assert envelope.occurred_at == envelope.received_at == NOW
    assert envelope.parts == (TextPart(text=dict(SMS)["Body"]),)
    assert envelope.metadata == {"account_sid": ACCOUNT, "messaging_service_sid": "MG" + "c3" * 16, "num_segments": "1"}
    assert envelope.group_id == "sms:+573001234567"


def test_an_mms_keeps_every_media_url_and_type_up_to_num_media() -> None:
    media = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME"
    envelope = one(
        replace(SMS, Body="", NumMedia="2", MediaUrl0=media + "0", MediaContentType0="image/jpeg",
                MediaUrl1=media + "1", MediaContentType1="audio/ogg", MediaUrl2=media + "2", MediaContentType2="x/y")
    )  # fmt: skip
    assert envelope.parts == (
        MediaPart(url=media + "0", mime_type="image/jpeg"),
        MediaPart(url=media + "1", mime_type="audio/ogg"),
    )


def test_whatsapp_via_twilio_with_profile_name_location_and_reply() -> None:
    envelope = one(
        replace(SMS, From="whatsapp:+5491123456789", To="whatsapp:+14155238886", Body="", ProfileName="Lucía Fernández",
                WaId="5491123456789", MessageType="location", Latitude="-34.6037", Longitude="-58.3816",
                Address="Av. de Mayo 500, Buenos Aires", Label="Oficina", OriginalRepliedMessageSid="SM" + "e5" * 16)
    )  # fmt: skip
    assert envelope.channel == "whatsapp"
    assert envelope.sender.value == "+5491123456789"
    assert envelope.sender.name == "Lucía Fernández"
    assert envelope.recipient.value == "+14155238886"
    assert envelope.parts == (
        LocationPart(latitude=-34.6037, longitude=-58.3816, name="Oficina", address="Av. de Mayo 500, Buenos Aires"),
    )
    assert envelope.in_reply_to == "SM" + "e5" * 16
    assert envelope.metadata["wa_id"] == "5491123456789"
    assert envelope.metadata["message_type"] == "location"
    assert envelope.group_id == "whatsapp:+5491123456789"


def test_a_whatsapp_quick_reply_is_a_button_part_without_repeating_its_text() -> None:
    envelope = one(
        replace(SMS, From="whatsapp:+573001234567", Body="Sí, confirmo", ButtonText="Sí, confirmo",
                ButtonPayload="cita_confirmar", MessageType="button")
    )  # fmt: skip
    assert envelope.parts == (InteractiveReplyPart(reply_id="cita_confirmar", title="Sí, confirmo", kind="button"),)


def test_rcs_is_its_own_channel() -> None:
    envelope = one(replace(SMS, From="rcs:+525512345678", To="rcs:hilo_agent"))
    assert envelope.channel == "rcs"
    assert envelope.sender.value == "+525512345678"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Body": ""}, "without supported content"),
        ({"Body": "   \n"}, "without supported content"),
        ({"From": "messenger:123456"}, "channel prefix"),
    ],
)
def test_genuine_messages_hilo_cannot_use_are_ignored_with_a_reason(fields: dict[str, str], reason: str) -> None:
    result = twilio.normalize_message(params(replace(SMS, **fields)), correlation_id="req-1", now=NOW)
    assert result.inbound == ()
    assert reason in result.ignored[0]


def test_a_bad_media_part_is_rejected_while_the_text_still_goes() -> None:
    pairs = replace(SMS, NumMedia="1", MediaUrl0="ftp://nope", MediaContentType0="image/png")
    result = twilio.normalize_message(params(pairs), correlation_id="req-1", now=NOW)
    assert [type(part) for part in result.inbound[0].parts] == [TextPart]
    assert result.rejected == ("MediaUrl0 does not fit the envelope",)


@pytest.mark.parametrize(
    "pairs",
    [
        [name_value for name_value in SMS if name_value[0] != "MessageSid"],
        [name_value for name_value in SMS if name_value[0] != "From"],
        replace(SMS, MessageSid="SM con espacios"),
        replace(SMS, NumMedia="muchos"),
        replace(SMS, From="whatsapp:"),
    ],
)
def test_a_message_twilio_would_never_send_is_invalid_input(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        twilio.normalize_message(params(pairs), correlation_id="req-1", now=NOW)


# ------------------------------------------------------------------ status callbacks


def status(**fields: str) -> Normalized:
    pairs = [("SmsSid", SID), ("SmsStatus", "sent"), ("MessageStatus", "sent"), ("To", "+573001234567"),
             ("MessagingServiceSid", "MG1"), ("MessageSid", SID), ("AccountSid", ACCOUNT), ("From", "+13055550123"),
             ("ApiVersion", "2010-04-01")]  # fmt: skip
    return twilio.normalize_status(params(replace(pairs, **fields)), correlation_id="req-1", now=NOW)


@pytest.mark.parametrize(
    ("twilio_status", "hilo_status"),
    [("accepted", "queued"), ("queued", "queued"), ("scheduled", "queued"), ("sending", "queued"), ("sent", "sent"),
     ("delivered", "delivered"), ("read", "read"), ("failed", "failed"), ("undelivered", "failed"),
     ("canceled", "canceled")],
)  # fmt: skip
def test_status_callbacks_map_to_hilo_statuses(twilio_status: str, hilo_status: str) -> None:
    (envelope,) = status(MessageStatus=twilio_status).statuses
    assert envelope.status == DeliveryStatus(hilo_status)
    assert (envelope.channel, envelope.provider, envelope.provider_message_id) == ("sms", "twilio", SID)
    assert envelope.recipient is not None
    assert envelope.recipient.value == "+573001234567"
    assert envelope.occurred_at == NOW
    assert envelope.dedup_id == f"{SID}:{hilo_status}"


def test_a_failed_whatsapp_status_keeps_its_error_code() -> None:
    (envelope,) = status(
        MessageStatus="undelivered", ErrorCode="63016", To="whatsapp:+573001234567", From="whatsapp:+13055550123"
    ).statuses
    assert (envelope.channel, envelope.status, envelope.error_code) == ("whatsapp", "failed", "63016")
    (delivered,) = status(MessageStatus="delivered", ErrorCode="30003").statuses
    assert delivered.error_code is None


@pytest.mark.parametrize("value", ["receiving", "received", "partially_delivered", "algo_nuevo"])
def test_statuses_that_are_not_delivery_progress_are_ignored(value: str) -> None:
    result = status(MessageStatus=value)
    assert result.statuses == ()
    assert len(result.ignored) == 1


def test_a_status_callback_without_message_status_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        twilio.normalize_status(params([("MessageSid", SID)]), correlation_id="req-1", now=NOW)


# ------------------------------------------------------------------ voice

CALL_SID = "CA" + "f6" * 16
CALL = [("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", CALL_SID), ("CallStatus", "ringing"),
        ("Called", "+525588776655"), ("Caller", "+525512345678"), ("Direction", "inbound"),
        ("From", "+525512345678"), ("FromCountry", "MX"), ("To", "+525588776655")]  # fmt: skip


def test_an_incoming_call_is_a_call_event_answered_with_the_spanish_ivr() -> None:
    result, answer = twilio.answer_call(params(CALL), raw_query="", correlation_id="req-1", now=NOW)
    (envelope,) = result.inbound
    assert (envelope.kind, envelope.channel, envelope.provider) == ("call", "voice", "twilio")
    assert envelope.provider_message_id == CALL_SID
    assert (envelope.sender.value, envelope.recipient.value) == ("+525512345678", "+525588776655")
    assert envelope.call is not None
    assert (envelope.call.status, envelope.call.direction) == ("ringing", "inbound")
    assert answer.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf" finishOnKey="#"')
    assert 'action="voice?step=id" method="POST"' in answer
    assert '<Say language="es-MX">' in answer
    assert "número de documento" in answer
    assert answer.endswith("<Enqueue>soporte</Enqueue></Response>")


def test_the_gathered_digits_are_enqueued_and_the_call_is_queued_for_an_agent() -> None:
    pairs = replace(CALL, CallStatus="in-progress", Digits="1020304050")
    result, answer = twilio.answer_call(params(pairs), raw_query="step=id", correlation_id="req-1", now=NOW)
    (envelope,) = result.inbound
    assert envelope.provider_message_id == f"{CALL_SID}:digits"
    assert envelope.kind == "call"
    assert envelope.call is not None
    assert envelope.call.digits == "1020304050"
    assert "1 0 2 0 3 0 4 0 5 0" in answer
    assert answer.endswith("<Enqueue>soporte</Enqueue></Response>")


@pytest.mark.parametrize("digits", ["", "12a4", "<Say>hola</Say>", "1" * 65])
def test_missing_or_odd_digits_enqueue_nothing_but_still_reach_an_agent(digits: str) -> None:
    pairs = replace(CALL, CallStatus="in-progress", Digits=digits)
    result, answer = twilio.answer_call(params(pairs), raw_query="step=id", correlation_id="req-1", now=NOW)
    assert result.inbound == ()
    assert len(result.ignored) == 1
    assert "<Enqueue>soporte</Enqueue>" in answer
    assert "hola" not in answer


def test_an_unknown_ivr_step_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="step"):
        twilio.answer_call(params(CALL), raw_query="step=otro", correlation_id="req-1", now=NOW)


def test_every_text_in_twiml_is_escaped() -> None:
    assert twilio._say('<Play>x</Play> & "y"') == '<Say language="es-MX">&lt;Play&gt;x&lt;/Play&gt; &amp; "y"</Say>'


@pytest.mark.parametrize("final", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_a_final_call_status_is_a_call_ended_event_with_its_duration(final: str) -> None:
    pairs = replace(CALL, CallStatus=final, CallDuration="47", Timestamp="Sat, 14 Mar 2026 15:02:03 +0000")
    (envelope,) = twilio.normalize_call_status(params(pairs), correlation_id="req-1", now=NOW).inbound
    assert envelope.kind == InboundKind.CALL_ENDED
    assert envelope.provider_message_id == f"{CALL_SID}:{final}"
    assert envelope.call is not None
    assert envelope.call.duration_seconds == 47
    assert envelope.occurred_at == datetime(2026, 3, 14, 15, 2, 3, tzinfo=UTC)
    assert envelope.received_at == NOW


@pytest.mark.parametrize("intermediate", ["queued", "initiated", "ringing", "in-progress"])
def test_intermediate_call_statuses_are_ignored(intermediate: str) -> None:
    result = twilio.normalize_call_status(params(replace(CALL, CallStatus=intermediate)), correlation_id="r", now=NOW)
    assert result.inbound == ()
    assert len(result.ignored) == 1


def test_an_outbound_call_has_the_customer_as_sender_and_a_withheld_caller_is_anonymous() -> None:
    outbound = replace(CALL, Direction="outbound-api", From="+525588776655", To="+525512345678")
    (envelope,) = twilio.answer_call(params(outbound), raw_query="", correlation_id="r", now=NOW)[0].inbound
    assert envelope.sender.value == "+525512345678"
    (anonymous,) = twilio.answer_call(params(replace(CALL, From="")), raw_query="", correlation_id="r", now=NOW)[
        0
    ].inbound
    assert anonymous.sender.value == "anonymous"


# ------------------------------------------------------------------ property: nothing but HiloError or Normalized

_names = st.sampled_from(
    ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "MediaUrl1", "Latitude",
     "Longitude", "Address", "Label", "ButtonText", "ButtonPayload", "ProfileName", "WaId", "MessageStatus",
     "ErrorCode", "ErrorMessage", "CallSid", "CallStatus", "Direction", "CallDuration", "Timestamp", "Digits",
     "OriginalRepliedMessageSid", "AccountSid", "NumSegments"]
) | st.text(max_size=8)  # fmt: skip
_values = st.text(max_size=40) | st.sampled_from(
    ["SM123", "whatsapp:+573001234567", "rcs:", "+5215512345678", "2", "-1", "1e999", "nan", "https://x.example/a",
     "image/jpeg", "delivered", "failed", "completed", "Mon, 32 Foo 2026", "12#", "inbound", "outbound-api", ""]
)  # fmt: skip
_form = st.lists(st.tuples(_names, _values), max_size=25)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300).map(lambda body: (body, None)),
        _form.map(lambda pairs: (urlencode(pairs).encode(), "application/x-www-form-urlencoded")),
        st.dictionaries(_names, _values | st.integers() | st.lists(_values, max_size=3)).map(
            lambda doc: (json.dumps(doc).encode(), "application/json")
        ),
    ),
    st.sampled_from(["", "step=id", "step=x", "step"]),
)
def test_malformed_bodies_only_ever_raise_hilo_errors(request: tuple[bytes, str | None], query: str) -> None:
    body, content_type = request
    try:
        parsed, _ = twilio.parse_params(body, content_type)
    except HiloError:
        return
    for normalize in (
        lambda: twilio.normalize_message(parsed, correlation_id="r", now=NOW),
        lambda: twilio.normalize_status(parsed, correlation_id="r", now=NOW),
        lambda: twilio.normalize_call_status(parsed, correlation_id="r", now=NOW),
        lambda: twilio.answer_call(parsed, raw_query=query, correlation_id="r", now=NOW)[0],
    ):
        with contextlib.suppress(HiloError):
            assert isinstance(normalize(), Normalized)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=10), st.text(max_size=20))
def test_any_form_agrees_with_the_official_validator(pairs: list[tuple[str, str]], query: str) -> None:
    url = f"{BASE}/webhooks/twilio/messages" + (f"?q={query}" if query else "")
    parsed, _ = twilio.parse_params(urlencode(pairs).encode(), None)
    as_parsed = [(name, value) for name, values in parsed.items() for value in values]
    distinct = {name: len(values) == len(set(values)) for name, values in parsed.items()}
    if all(distinct.values()):  # the SDK drops repeated identical values; Hilo accepts both forms
        assert twilio.compute_signature(url, parsed, TOKEN) == RequestValidator(TOKEN).compute_signature(
            url, _MultiDict(as_parsed)
        )
    assert re.fullmatch(r"[A-Za-z0-9+/]{27}=", twilio.compute_signature(url, parsed, TOKEN))
