"""Inbound e-mail on the local twin: SendGrid Inbound Parse over real HTTP, and SES as SES would do it (the raw
mail in the PayloadBucket under inbound-email/, the S3-action notification published to EmailInboundTopic, which
feeds EmailInboundQueue and EmailInboundFunction); each ends as an envelope on InboundQueue."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import pytest

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import HttpResult, QueueCollector, http

pytestmark = pytest.mark.stack

AUTH = (
    "Basic "
    + base64.b64encode(f"{TEST_CONFIG['HILO_SENDGRID_USER']}:{TEST_CONFIG['HILO_SENDGRID_PASSWORD']}".encode()).decode()
)
BOUNDARY = "xYzZY"


def mime(message_id: str, sender: str, text: str = "¿Ya salió mi pedido 4411?") -> bytes:
    return (
        f"From: =?UTF-8?Q?Camila_G=C3=B3mez?= <{sender}>\r\nTo: soporte@tienda.example\r\n"
        f"Subject: =?UTF-8?Q?Re:_Env=C3=ADo?=\r\nDate: Tue, 4 Mar 2025 09:12:03 -0500\r\nMessage-ID: <{message_id}>\r\n"
        "In-Reply-To: <0100018e-out-1@email.amazonses.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{text}\r\n\r\nEl lun, 3 mar 2025 a las 10:00, Soporte <soporte@tienda.example> escribió:\r\n> Hola\r\n"
    ).encode()


def unique() -> tuple[str, str]:
    """A Message-ID and a sender no other test uses (the queues are shared)."""
    token = secrets.token_hex(6)
    return f"CAG{token}@mail.gmail.com", f"camila.{token}@gmail.com"


def form(fields: list[tuple[str, bytes | str]]) -> bytes:
    chunks = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + (value.encode() if isinstance(value, str) else value)
        + b"\r\n"
        for name, value in fields
    ]
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def post(stack: LocalStack, body: bytes, authorization: str | None = AUTH) -> HttpResult:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if authorization is not None:
        headers["authorization"] = authorization
    return http("POST", f"{stack.api_url}/webhooks/email/sendgrid", body, headers)


def envelope_field(sender: str) -> str:
    return json.dumps({"to": ["soporte@parse.tienda.example"], "from": sender})


def test_sendgrid_raw_mode_mail_lands_on_the_inbound_queue_with_its_raw_copy(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given
    message_id, sender = unique()
    raw = mime(message_id, sender)
    # When
    response = post(hilo_stack, form([("email", raw), ("envelope", envelope_field(sender)), ("SPF", "pass")]))
    # Then
    assert response.status == 200
    (body,) = inbound_queue.wait_for(provider_message_id=message_id)
    assert (body["channel"], body["provider"], body["kind"]) == ("email", "sendgrid", "message")
    assert body["sender"] == {"value": sender, "name": "Camila Gómez"}
    assert body["parts"] == [{"type": "text", "text": "¿Ya salió mi pedido 4411?"}]
    assert body["subject"] == "Re: Envío"
    assert body["in_reply_to"] == "0100018e-out-1@email.amazonses.com"
    assert body["_attributes"]["MessageGroupId"] == f"email:{sender}"
    bucket, _, key = body["raw_ref"].removeprefix("s3://").partition("/")
    assert bucket == hilo_stack.physical_id("PayloadBucket")
    assert hilo_stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == raw


def test_sendgrid_default_mode_decodes_charsets_and_retries_enqueue_once(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    message_id, sender = unique()
    headers = f"From: Camila <{sender}>\nMessage-ID: <{message_id}>\nSubject: Env=?utf-8?q?=C3=AD?=o\n"
    body = form(
        [
            ("headers", headers),
            ("text", "¿Cuándo llega?".encode("iso-8859-1")),
            ("subject", "Envío".encode("iso-8859-1")),
            ("envelope", envelope_field(sender)),
            ("charsets", '{"text":"iso-8859-1","subject":"iso-8859-1","headers":"UTF-8"}'),
            ("attachments", "0"),
        ]
    )
    assert [post(hilo_stack, body).status for _ in range(3)] == [200, 200, 200]  # SendGrid retrying
    found = inbound_queue.wait_for(count=2, timeout=3.0, provider_message_id=message_id)
    assert len(found) == 1
    assert found[0]["parts"] == [{"type": "text", "text": "¿Cuándo llega?"}]
    assert found[0]["subject"] == "Envío"


@pytest.mark.parametrize("authorization", [None, "Basic " + base64.b64encode(b"parse:wrong").decode()])
def test_sendgrid_without_the_right_credentials_is_a_401_challenge(
    hilo_stack: LocalStack, inbound_queue: QueueCollector, authorization: str | None
) -> None:
    message_id, sender = unique()
    response = post(hilo_stack, form([("email", mime(message_id, sender)), ("envelope", envelope_field(sender))]),
                    authorization)  # fmt: skip
    assert response.status == 401
    assert response.headers["www-authenticate"] == 'Basic realm="hilo"'
    assert response.json()["error"] == "unauthorized"
    assert inbound_queue.wait_for(timeout=1.0, provider_message_id=message_id) == []


def test_sendgrid_request_without_an_envelope_is_a_json_400(hilo_stack: LocalStack) -> None:
    response = post(hilo_stack, form([("text", "hola")]))
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"


def ses_notification(stack: LocalStack, ses_id: str, sender: str, spam: str = "PASS") -> dict[str, Any]:
    verdict = {"status": "PASS"}
    return {
        "notificationType": "Received",
        "receipt": {
            "timestamp": "2025-03-04T14:12:10.936Z",
            "processingTimeMillis": 406,
            "recipients": ["soporte@tienda.example"],
            "spamVerdict": {"status": spam},
            "virusVerdict": verdict,
            "spfVerdict": verdict,
            "dkimVerdict": verdict,
            "dmarcVerdict": verdict,
            "action": {
                "type": "S3",
                "topicArn": stack.physical_id("EmailInboundTopic"),
                "bucketName": stack.physical_id("PayloadBucket"),
                "objectKey": f"inbound-email/{ses_id}",
            },
        },
        "mail": {
            "timestamp": "2025-03-04T14:12:10.936Z",
            "source": sender,
            "messageId": ses_id,
            "destination": ["soporte@tienda.example"],
            "headersTruncated": False,
            "headers": [{"name": "From", "value": sender}],
            "commonHeaders": {"from": [sender], "to": ["soporte@tienda.example"], "subject": "Re: Envío"},
        },
    }


def deliver_like_ses(stack: LocalStack, ses_id: str, sender: str, spam: str = "PASS", times: int = 1) -> None:
    message_id = f"{ses_id}@mail.gmail.com"
    stack.client("s3").put_object(
        Bucket=stack.physical_id("PayloadBucket"), Key=f"inbound-email/{ses_id}", Body=mime(message_id, sender)
    )
    notification = json.dumps(ses_notification(stack, ses_id, sender, spam))
    for _ in range(times):  # SNS delivers at least once
        stack.client("sns").publish(TopicArn=stack.physical_id("EmailInboundTopic"), Message=notification)


def test_ses_mail_stored_in_s3_reaches_the_inbound_queue_once_even_when_redelivered(
    hilo_stack: LocalStack, inbound_queue: QueueCollector
) -> None:
    # Given SES stored a mail and notified twice
    ses_id = f"ses{secrets.token_hex(10)}"
    _, sender = unique()
    deliver_like_ses(hilo_stack, ses_id, sender, times=2)
    # Then one envelope arrives, its dedup key SES's message id
    found = inbound_queue.wait_for(count=2, timeout=8.0, provider_message_id=ses_id)
    assert len(found) == 1
    body = found[0]
    assert (body["provider"], body["channel"]) == ("ses", "email")
    assert body["parts"] == [{"type": "text", "text": "¿Ya salió mi pedido 4411?"}]
    assert body["metadata"]["message_id"] == f"{ses_id}@mail.gmail.com"
    assert body["raw_ref"] == f"s3://{hilo_stack.physical_id('PayloadBucket')}/inbound-email/{ses_id}"
    assert body["_attributes"]["MessageDeduplicationId"] == f"ses:{ses_id}"


def test_ses_spam_is_quarantined_not_enqueued(hilo_stack: LocalStack, inbound_queue: QueueCollector) -> None:
    spam_id, clean_id = f"ses{secrets.token_hex(10)}", f"ses{secrets.token_hex(10)}"
    _, sender = unique()
    deliver_like_ses(hilo_stack, spam_id, sender, spam="FAIL")
    deliver_like_ses(hilo_stack, clean_id, sender)
    # The clean mail, published after the spam, arriving proves the spam was processed by then.
    assert len(inbound_queue.wait_for(timeout=8.0, provider_message_id=clean_id)) == 1
    time.sleep(0.5)
    assert inbound_queue.matching(provider_message_id=spam_id) == []
    assert hilo_stack.client("s3").head_object(Bucket=hilo_stack.physical_id("PayloadBucket"),
                                               Key=f"inbound-email/{spam_id}")  # fmt: skip
