"""Inbound e-mail: MIME → envelope (shared), SES notifications (S3 and SNS actions), SendGrid Inbound Parse (both
modes, basic auth). Mail is shaped like what Gmail, Outlook and Apple Mail send; notifications as AWS documents them
(docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-examples.html)."""

from __future__ import annotations

import base64
import json
import quopri
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.queue_publisher import QueuePublisher
from shared.adapters.raw_email_store import RawEmailStore
from shared.errors import (
    Forbidden,
    HiloError,
    InvalidInput,
    PermanentError,
    RetryableError,
    Unauthorized,
    UnsupportedMediaType,
)
from shared.http import raw_body
from shared.models.inbound import InboundEnvelope, QueueMessage
from shared.models.message import MediaPart, TextPart
from shared.providers import email, email_sendgrid, email_ses
from shared.settings import settings_from
from shared.webhooks import Normalized, WebhookPorts

NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
OUR_SES_ID = "0100018e2b7c1a2b-5f1c2d3e-aaaa-bbbb-cccc-1234567890ab-000000@email.amazonses.com"


def qp(text: str, charset: str = "utf-8") -> str:
    return quopri.encodestring(text.encode(charset)).decode("ascii")


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("latin-1")


# ------------------------------------------------------------------ real-world-shaped mail

GMAIL_ES_PLAIN = """Hola, el pedido 4411 todavía no llega y ya pasaron 5 días.
¿Me pueden confirmar la guía?

Gracias,
Camila

El lun, 3 mar 2025 a las 10:00, Soporte Tienda Hilo (<soporte@tienda.example>)
escribió:

> Hola Camila, tu pedido salió ayer con Servientrega.
>
> Saludos,
> Equipo de soporte
"""
GMAIL_ES_HTML = (
    '<div dir="ltr">Hola, el pedido 4411 todavía no llega y ya pasaron 5 días.<br>¿Me pueden confirmar la guía?'
    '<br><br>Gracias,<br>Camila</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">El lun, '
    "3 mar 2025 a las 10:00, Soporte Tienda Hilo (&lt;soporte@tienda.example&gt;) escribió:<br></div>"
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Hola Camila, tu pedido salió ayer.'
    "</blockquote></div>"
)
GMAIL_ES = crlf(f"""Received: by mail-lf1-f41.google.com with SMTP id 2adb3069b0e04-5139a12f1e8so9211e87.1
        for <soporte@tienda.example>; Tue, 04 Mar 2025 06:12:10 -0800 (PST)
MIME-Version: 1.0
References: <CAFx3m+Zp0w1@mail.gmail.com> <{OUR_SES_ID}>
In-Reply-To: <{OUR_SES_ID}>
From: =?UTF-8?Q?Camila_Restrepo_G=C3=B3mez?= <Camila.Restrepo@Gmail.com>
Date: Tue, 4 Mar 2025 09:12:03 -0500
Message-ID: <CAGv5x+Q9k2aT7Lq-x3Hn0m1P=w@mail.gmail.com>
Subject: =?UTF-8?Q?Re=3A_Pedido_4411_=E2=80=93_env=C3=ADo_demorado?=
To: Soporte Tienda Hilo <soporte@tienda.example>
Content-Type: multipart/alternative; boundary="000000000000d1b2c3061f9e7a3b"

--000000000000d1b2c3061f9e7a3b
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{qp(GMAIL_ES_PLAIN)}
--000000000000d1b2c3061f9e7a3b
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{qp(GMAIL_ES_HTML)}
--000000000000d1b2c3061f9e7a3b--
""")

OUTLOOK_EN_PLAIN = """Hi team,

I still haven't received the refund for order 7790. Could you check?

John Smith
Purchasing | Contoso Ltd.

________________________________
From: Hilo Support <support@shop.example>
Sent: Monday, March 3, 2025 10:00 AM
To: John Smith <john.smith@contoso.example>
Subject: RE: Refund for order 7790

Hi John, the refund was processed today.
"""
OUTLOOK_EN = crlf(f"""From: John Smith <John.Smith@contoso.example>
To: "support@shop.example" <support@shop.example>
Subject: RE: Refund for order 7790
Thread-Topic: Refund for order 7790
Date: Tue, 4 Mar 2025 14:05:11 +0000
Message-ID: <DM6PR11MB4123ABCD0123456789@DM6PR11MB4123.namprd11.prod.outlook.com>
In-Reply-To: <0100018e-aaaa@email.amazonses.com>
Content-Language: en-US
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(OUTLOOK_EN_PLAIN)}""")

LATIN1_ES_PLAIN = """Buenas tardes, adjunto el comprobante de la consignación.
La señora Muñoz autorizó el cambio.

Enviado desde mi iPhone

-----Mensaje original-----
De: Soporte <soporte@tienda.example>
Enviado: lunes, 3 de marzo de 2025 10:00
Para: Ana Muñoz <ana@correo.example>
Asunto: Pedido 4411

Hola Ana, ¿nos envías el comprobante?
"""
LATIN1_ES = crlf("""From: Ana =?ISO-8859-1?Q?Mu=F1oz?= <ana@correo.example>
To: soporte@tienda.example
Subject: =?iso-8859-1?Q?RE:_Consignaci=F3n?=
Date: Tue, 04 Mar 2025 11:00:00 -0500
Message-ID: <001a01db8c@correo.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: 8bit

""") + LATIN1_ES_PLAIN.replace("\n", "\r\n").encode("iso-8859-1")

HTML_ONLY = crlf(f"""From: "Pedro" <pedro@example.org>
To: soporte@tienda.example
Subject: Cambio de talla
Date: Tue, 04 Mar 2025 12:00:00 +0000
Message-ID: <html-only-1@example.org>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

{
    b64(b'''<html><head><style>p {{color:red}}</style></head><body><p>Quiero cambiar la talla 38 por la 39.</p>
<p>Gracias &amp; saludos</p><script>alert(1)</script><blockquote>Respuesta anterior citada</blockquote>
</body></html>''')
}""")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"0" * 2048 + b"\n%%EOF\n"
WITH_ATTACHMENTS = crlf(f"""From: Luisa <luisa@example.com>
To: Soporte <soporte@tienda.example>
Subject: Factura y foto del producto
Date: Tue, 04 Mar 2025 13:00:00 -0500
Message-ID: <attach-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Adjunto la factura y una foto de cómo llegó la caja.

--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>Adjunto la factura y una foto:</p><img src="cid:caja.png@01DB8C">
--rel
Content-Type: image/png; name="caja.png"
Content-Disposition: inline; filename="caja.png"
Content-ID: <caja.png@01DB8C>
Content-Transfer-Encoding: base64

{b64(PNG)}
--rel--

--alt--

--mixed
Content-Type: application/pdf; name="factura.pdf"
Content-Disposition: attachment; filename*=UTF-8''factura_n%C2%BA_0231.pdf
Content-Transfer-Encoding: base64

{b64(PDF)}
--mixed--
""")


def delivery(**fields: Any) -> email.Delivery:
    defaults: dict[str, Any] = {
        "provider": "ses",
        "provider_message_id": "d6iitobk75ur44p8kdnnp7g2n800",
        "envelope_from": "camila.restrepo@gmail.com",
        "recipients": ("soporte@tienda.example",),
        "received_at": NOW,
        "correlation_id": "d6iitobk75ur44p8kdnnp7g2n800",
        "raw_ref": "s3://payloads/inbound-email/d6iitobk75ur44p8kdnnp7g2n800",
    }
    return email.Delivery(**{**defaults, **fields})


def one(raw: bytes, **fields: Any) -> InboundEnvelope:
    result = email.to_envelope(email.parse_mime(raw), delivery(**fields))
    assert (result.ignored, result.rejected) == ((), ())
    (envelope,) = result.inbound
    return envelope


# ------------------------------------------------------------------ MIME → envelope


def test_a_gmail_reply_in_spanish_keeps_only_the_new_text_and_its_threading() -> None:
    # When
    envelope = one(GMAIL_ES)
    # Then the quoted history ("El … escribió:", wrapped over two lines) is gone, the valediction stays
    assert envelope.parts == (
        TextPart(
            text="Hola, el pedido 4411 todavía no llega y ya pasaron 5 días.\n¿Me pueden confirmar la guía?\n\n"
            "Gracias,\nCamila"
        ),
    )
    assert envelope.subject == "Re: Pedido 4411 – envío demorado"
    assert envelope.sender.value == "camila.restrepo@gmail.com"
    assert envelope.sender.name == "Camila Restrepo Gómez"
    assert envelope.recipient.value == "soporte@tienda.example"
    assert envelope.in_reply_to == OUR_SES_ID
    assert envelope.references == ("CAFx3m+Zp0w1@mail.gmail.com", OUR_SES_ID)
    assert envelope.metadata["message_id"] == "CAGv5x+Q9k2aT7Lq-x3Hn0m1P=w@mail.gmail.com"
    assert envelope.metadata["text_source"] == "plain"
    assert envelope.metadata["reply_stripped"] == "true"
    assert envelope.occurred_at == datetime(2025, 3, 4, 14, 12, 3, tzinfo=UTC)
    assert envelope.received_at == NOW
    assert envelope.group_id == "email:camila.restrepo@gmail.com"
    assert envelope.raw_ref == "s3://payloads/inbound-email/d6iitobk75ur44p8kdnnp7g2n800"


def test_an_outlook_reply_in_english_drops_the_header_block_and_the_separator() -> None:
    envelope = one(OUTLOOK_EN, envelope_from="John.Smith@contoso.example")
    assert envelope.parts == (
        TextPart(
            text="Hi team,\n\nI still haven't received the refund for order 7790. Could you check?\n\n"
            "John Smith\nPurchasing | Contoso Ltd."
        ),
    )
    assert envelope.in_reply_to == "0100018e-aaaa@email.amazonses.com"
    assert "header_from" not in envelope.metadata  # same address, only the case differed


def test_an_iso_8859_1_outlook_reply_in_spanish_decodes_and_drops_the_mobile_footer() -> None:
    envelope = one(LATIN1_ES, envelope_from="ana@correo.example")
    assert envelope.parts == (
        TextPart(text="Buenas tardes, adjunto el comprobante de la consignación.\nLa señora Muñoz autorizó el cambio."),
    )
    assert envelope.subject == "RE: Consignación"
    assert envelope.sender.name == "Ana Muñoz"


def test_an_html_only_mail_becomes_text_without_styles_scripts_or_the_quote() -> None:
    envelope = one(HTML_ONLY, envelope_from="pedro@example.org")
    assert envelope.parts == (TextPart(text="Quiero cambiar la talla 38 por la 39.\n\nGracias & saludos"),)
    assert envelope.metadata["text_source"] == "html"


def test_attachments_and_inline_images_are_described_not_carried() -> None:
    envelope = one(WITH_ATTACHMENTS, envelope_from="luisa@example.com")
    assert envelope.parts == (
        TextPart(text="Adjunto la factura y una foto de cómo llegó la caja."),
        MediaPart(provider_media_id="cid:caja.png@01DB8C", mime_type="image/png", filename="caja.png",
                  size_bytes=len(PNG)),
        MediaPart(provider_media_id="part:2", mime_type="application/pdf", filename="factura_nº_0231.pdf",
                  size_bytes=len(PDF)),
    )  # fmt: skip
    assert envelope.metadata["attachments"] == "2"
    assert len(envelope.model_dump_json()) < 4096  # bytes never travel in the envelope


def test_the_smtp_envelope_sender_wins_and_a_different_header_from_is_kept_for_ingest() -> None:
    envelope = one(GMAIL_ES, envelope_from="srs0=ab12=camila@forwarder.example")
    assert envelope.sender.value == "srs0=ab12=camila@forwarder.example"
    assert envelope.metadata["header_from"] == "camila.restrepo@gmail.com"


@pytest.mark.parametrize(
    ("headers", "fields", "reason"),
    [
        ("Auto-Submitted: auto-replied\r\n", {}, "auto-submitted"),
        ("", {"envelope_from": ""}, "bounce"),
        ("", {"envelope_from": "<>"}, "bounce"),
    ],
)
def test_auto_replies_and_bounces_are_ignored_with_a_reason(headers: str, fields: dict[str, Any], reason: str) -> None:
    raw = f"From: a@example.com\r\nTo: b@example.com\r\n{headers}Subject: Fuera de la oficina\r\n\r\nVuelvo el lunes."
    result = email.to_envelope(email.parse_mime(raw.encode()), delivery(**fields))
    assert result.inbound == ()
    assert reason in result.ignored[0]


def test_a_subject_only_mail_carries_the_subject_as_its_text_and_an_empty_one_is_ignored() -> None:
    subject_only = email.parse_mime(b"From: a@example.com\r\nSubject: Llamenme al 3001234567\r\n\r\n")
    (envelope,) = email.to_envelope(subject_only, delivery()).inbound
    assert envelope.parts == (TextPart(text="Llamenme al 3001234567"),)
    empty = email.to_envelope(email.parse_mime(b"From: a@example.com\r\n\r\n \r\n"), delivery())
    assert empty.ignored == ("mail without text, attachments or subject",)


def test_a_mail_without_any_sender_address_is_rejected_not_raised() -> None:
    result = email.to_envelope(email.parse_mime(b"Subject: x\r\n\r\nhola"), delivery(envelope_from=None))
    assert result.rejected == ("mail without a usable sender address",)


def test_a_date_in_the_future_falls_back_to_the_receipt_time() -> None:
    raw = b"From: a@example.com\r\nDate: Fri, 01 Jan 2100 00:00:00 +0000\r\n\r\nhola"
    assert one(raw).occurred_at == NOW


def test_a_very_long_body_is_truncated_to_the_text_part_limit_and_says_so() -> None:
    raw = b"From: a@example.com\r\n\r\n" + b"a" * 70000
    envelope = one(raw)
    assert isinstance(envelope.parts[0], TextPart)
    assert len(envelope.parts[0].text) == 65536
    assert envelope.metadata["text_truncated"] == "true"


def test_an_unknown_charset_and_broken_headers_still_parse() -> None:
    raw = (
        b"From: =?bogus-charset?Q?X?= <a@example.com>\r\nMessage-ID: not an id\r\nDate: yesterday\r\n"
        b"Subject: =?utf-8?B?!!!?=\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nol\xe1"
    )
    mail = email.parse_mime(raw)
    assert mail.text == "olá"  # undeclared truth: Windows-1252
    assert (mail.headers.message_id, mail.headers.date) == (None, None)
    assert mail.headers.from_address == "a@example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sí, esa dirección.\n\nEl 3 mar 2025, a las 10:00, Soporte <s@t.example> escribió:\n\n> ¿Confirmas?",
         "Sí, esa dirección."),
        ("Ok, thanks!\n\nOn Mon, Mar 3, 2025 at 10:00 AM Support <support@shop.example> wrote:\n> Hi",
         "Ok, thanks!"),
        ("Ok thanks\n\nSent from my iPhone\n\n> On Mar 3, 2025, at 10:00, Support <s@shop.example> wrote:\n>\n> hi",
         "Ok thanks"),
        ("Listo.\n\n-----Original Message-----\nFrom: x\nSent: y\nTo: z\n\nold", "Listo."),
        ("Quiero cancelar la suscripción.\n\n-- \nCamila Restrepo\nGerente | ACME", "Quiero cancelar la suscripción."),
        ("Perfecto\n\nObtener Outlook para iOS\n________________________________\nDe: Soporte\nEnviado: lunes\n"
         "Para: Ana\nAsunto: Pedido", "Perfecto"),
        ("Confirmo.\n> cita intercalada\nMi respuesta a eso.\n\n> cola citada", "Confirmo.\n> cita intercalada\nMi "
         "respuesta a eso."),
    ],
)  # fmt: skip
def test_strip_reply_cuts_quotes_and_signatures_in_spanish_and_english(text: str, expected: str) -> None:
    reply = email.strip_reply(text)
    assert reply.text == expected
    assert reply.stripped


@pytest.mark.parametrize(
    "text",
    [
        "Hola.\nGracias, pero necesito el número de guía.\nMi pedido es 4411.",
        "Hi\nThanks, but I still need the tracking number.\nBest regards, also to your team",
        "De: Bogotá\nPara: Medellín\nenvío urgente, por favor",
        "- item one\n- item two\nthat's the list",
        "---------- Forwarded message ---------\nDe: Banco <avisos@banco.example>\nAsunto: Pago\n\nSu pago fue...",
        "> only a quote\n> nothing else",
    ],
)
def test_strip_reply_keeps_text_that_only_looks_like_a_quote_or_signature(text: str) -> None:
    assert email.strip_reply(text) == email.Reply(text=text, stripped=False)


def test_html_to_text_turns_blockquotes_into_quoted_lines() -> None:
    assert email.html_to_text(GMAIL_ES_HTML).splitlines()[-1] == "> Hola Camila, tu pedido salió ayer."
    assert email.html_to_text("<ul><li>uno</li><li>dos</li></ul><pre>a\n  b</pre>") == "- uno\n- dos\na\n  b"


def test_message_ids_are_read_without_brackets_and_oversized_lists_keep_root_and_latest() -> None:
    assert email.message_ids("<a@b> <c@d>\r\n <a@b>") == ["a@b", "c@d"]
    assert email.message_ids("bare@id.example") == ["bare@id.example"]
    refs = " ".join(f"<r{i}@x>" for i in range(100))
    headers = email.parse_headers(f"From: a@example.com\r\nReferences: {refs}".encode())
    assert len(headers.references) == 64
    assert headers.references[0] == "r0@x"
    assert headers.references[-1] == "r99@x"


# ------------------------------------------------------------------ SES

TOPIC = "arn:aws:sns:us-east-1:123456789012:hilo-inbound-email"


def ses_notification(
    raw: bytes | None = None,
    *,
    action: str = "S3",
    message_id: str = "d6iitobk75ur44p8kdnnp7g2n800",
    spam: str = "PASS",
    virus: str = "PASS",
    encoding: str | None = None,
    source: str = "camila.restrepo@gmail.com",
) -> dict[str, Any]:
    """The Received notification, field for field as AWS's documented examples show it."""
    headers = [
        {"name": "Return-Path", "value": f"<{source}>"},
        {"name": "From", "value": "Camila Restrepo <camila.restrepo@gmail.com>"},
        {"name": "To", "value": "soporte@tienda.example"},
        {"name": "Subject", "value": "Re: Pedido 4411"},
    ]
    if action == "S3":
        action_doc = {"type": "S3", "topicArn": TOPIC, "bucketName": "payloads",
                      "objectKey": f"inbound-email/{message_id}"}  # fmt: skip
    else:
        action_doc = {"type": "SNS", "topicArn": TOPIC, **({"encoding": encoding} if encoding else {})}
    notification: dict[str, Any] = {
        "notificationType": "Received",
        "receipt": {
            "timestamp": "2025-03-04T14:12:10.936Z",
            "processingTimeMillis": 406,
            "recipients": ["soporte@tienda.example"],
            "spamVerdict": {"status": spam},
            "virusVerdict": {"status": virus},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": action_doc,
        },
        "mail": {
            "timestamp": "2025-03-04T14:12:10.936Z",
            "source": source,
            "messageId": message_id,
            "destination": ["soporte@tienda.example"],
            "headersTruncated": False,
            "headers": headers,
            "commonHeaders": {
                "returnPath": source,
                "from": ["Camila Restrepo <camila.restrepo@gmail.com>"],
                "date": "Tue, 4 Mar 2025 09:12:03 -0500",
                "to": ["soporte@tienda.example"],
                "messageId": "<CAGv5x+Q9k2aT7Lq-x3Hn0m1P=w@mail.gmail.com>",
                "subject": "Re: Pedido 4411",
            },
        },
    }
    if action == "SNS" and raw is not None:
        notification["content"] = (
            base64.b64encode(raw).decode() if (encoding or "").upper() == "BASE64" else raw.decode("utf-8")
        )
    return notification


def sns_body(message: dict[str, Any] | str, *, sns_type: str = "Notification") -> str:
    """An SQS record body as SNS delivers it (raw message delivery off)."""
    return json.dumps(
        {
            "Type": sns_type,
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": TOPIC,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": "2025-03-04T14:12:11.120Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkk"
            "OxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + TOPIC + ":1",
        }
    )  # fmt: skip


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, str, email_ses.SesPorts]]:
    with mock_aws():
        sqs, s3 = boto3.client("sqs", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1")
        inbound = sqs.create_queue(
            QueueName="inbound.fifo", Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup"}
        )["QueueUrl"]
        status = sqs.create_queue(QueueName="status")["QueueUrl"]
        s3.create_bucket(Bucket="payloads")
        ports = email_ses.ses_ports(
            {"INBOUND_QUEUE_URL": inbound, "STATUS_QUEUE_URL": status, "PAYLOAD_BUCKET_NAME": "payloads"}
        )
        yield sqs, s3, inbound, ports


def queued(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    return [{**json.loads(m["Body"]), "_attributes": m["Attributes"]} for m in messages]


def test_an_s3_action_notification_reads_the_stored_mail_and_enqueues_its_envelope(aws: Any) -> None:
    # Given SES stored the mail and notified
    sqs, s3, inbound, ports = aws
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    # When
    outcome = email_ses.process_record(sns_body(ses_notification()), ports)
    # Then
    assert outcome == "enqueued"
    (body,) = queued(sqs, inbound)
    envelope = QueueMessage.parse(json.dumps({k: v for k, v in body.items() if k != "_attributes"}))
    assert isinstance(envelope, InboundEnvelope)
    assert (envelope.channel, envelope.provider, envelope.provider_message_id) == (
        "email", "ses", "d6iitobk75ur44p8kdnnp7g2n800",
    )  # fmt: skip
    assert envelope.correlation_id == "d6iitobk75ur44p8kdnnp7g2n800"
    assert envelope.raw_ref == "s3://payloads/inbound-email/d6iitobk75ur44p8kdnnp7g2n800"
    assert envelope.received_at == datetime(2025, 3, 4, 14, 12, 10, 936000, tzinfo=UTC)
    assert envelope.metadata["spam_verdict"] == envelope.metadata["dmarc_verdict"] == "PASS"
    assert envelope.parts[0] == TextPart(
        text="Hola, el pedido 4411 todavía no llega y ya pasaron 5 días.\n¿Me pueden confirmar la guía?\n\n"
        "Gracias,\nCamila"
    )
    assert body["_attributes"]["MessageGroupId"] == "email:camila.restrepo@gmail.com"
    assert body["_attributes"]["MessageDeduplicationId"] == "ses:d6iitobk75ur44p8kdnnp7g2n800"


def test_a_redelivered_notification_produces_the_identical_envelope(aws: Any) -> None:
    sqs, s3, inbound, ports = aws
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    record = sns_body(ses_notification())
    email_ses.process_record(record, ports)
    email_ses.process_record(record, ports)
    assert len(queued(sqs, inbound)) == 1  # same dedup id, same body: the FIFO queue keeps one


@pytest.mark.parametrize("encoding", [None, "UTF8", "BASE64"])
def test_an_sns_action_carries_the_mail_inline_which_is_stored_for_raw_ref(aws: Any, encoding: str | None) -> None:
    sqs, s3, inbound, ports = aws
    raw = LATIN1_ES if encoding == "BASE64" else OUTLOOK_EN  # 8-bit mail needs Base64
    outcome = email_ses.process_record(sns_body(ses_notification(raw, action="SNS", encoding=encoding)), ports)
    assert outcome == "enqueued"
    (body,) = queued(sqs, inbound)
    assert body["raw_ref"] == "s3://payloads/inbound-email/sns/d6iitobk75ur44p8kdnnp7g2n800"
    stored = s3.get_object(Bucket="payloads", Key="inbound-email/sns/d6iitobk75ur44p8kdnnp7g2n800")["Body"].read()
    assert stored == raw
    assert body["subject"] == ("RE: Consignación" if encoding == "BASE64" else "RE: Refund for order 7790")


@pytest.mark.parametrize(("spam", "virus"), [("FAIL", "PASS"), ("PASS", "FAIL")])
def test_a_spam_or_virus_fail_is_quarantined_and_the_mail_stays_in_s3(aws: Any, spam: str, virus: str) -> None:
    sqs, s3, inbound, ports = aws
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    assert email_ses.process_record(sns_body(ses_notification(spam=spam, virus=virus)), ports) == "quarantined"
    assert queued(sqs, inbound) == []
    assert s3.head_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800")


def test_gray_verdicts_are_not_quarantined(aws: Any) -> None:
    _, s3, _, ports = aws
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    notification = ses_notification(spam="GRAY", virus="PROCESSING_FAILED")
    assert email_ses.process_record(sns_body(notification), ports) == "enqueued"


def test_a_bounce_notification_is_acknowledged_and_ignored(aws: Any) -> None:
    sqs, s3, inbound, ports = aws
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    assert email_ses.process_record(sns_body(ses_notification(source="")), ports) == "ignored"
    assert queued(sqs, inbound) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"Records": []}),
        sns_body("not json"),
        sns_body({"hello": "world"}),
        sns_body({"notificationType": "Received", "mail": {}}),
        sns_body(ses_notification(action="Lambda")),
        sns_body({**ses_notification(action="SNS"), "content": None}),
    ],
)
def test_a_record_that_is_not_an_ses_notification_fails_permanently(aws: Any, body: str) -> None:
    *_, ports = aws
    with pytest.raises(PermanentError):
        email_ses.process_record(body, ports)


def test_other_notification_types_and_subscription_messages_are_acknowledged(aws: Any) -> None:
    *_, ports = aws
    assert email_ses.process_record(sns_body({"notificationType": "AmazonSnsSubscriptionSucceeded"}), ports) == (
        "ignored"
    )
    assert email_ses.process_record(sns_body("{}", sns_type="SubscriptionConfirmation"), ports) == "ignored"


def test_a_missing_stored_mail_is_permanent(aws: Any) -> None:
    *_, ports = aws
    with pytest.raises(PermanentError, match="does not exist"):
        email_ses.process_record(sns_body(ses_notification()), ports)


class ThrottledS3:
    """S3 answering SlowDown, as it does under load."""

    def get_object(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject")


def test_s3_and_sqs_hiccups_are_retryable(aws: Any) -> None:
    _, s3, inbound, ports = aws
    record = sns_body(ses_notification())
    throttled = email_ses.SesPorts(delivery=ports.delivery, store=RawEmailStore("payloads", s3=ThrottledS3()))
    with pytest.raises(RetryableError):
        email_ses.process_record(record, throttled)
    s3.put_object(Bucket="payloads", Key="inbound-email/d6iitobk75ur44p8kdnnp7g2n800", Body=GMAIL_ES)
    gone_queue = WebhookPorts(
        settings=SettingsLoader({}),
        inbound=QueuePublisher(inbound.replace("inbound.fifo", "deleted.fifo")),
        status=ports.delivery.status,
    )
    with pytest.raises(RetryableError):
        email_ses.process_record(record, email_ses.SesPorts(delivery=gone_queue, store=ports.store))


# ------------------------------------------------------------------ SendGrid

BOUNDARY = "xYzZY"  # the boundary SendGrid uses


def multipart(fields: list[tuple[str, bytes | str, str | None, str | None]], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body: (name, value, filename, content type) per field."""
    chunks: list[bytes] = []
    for name, value, filename, content_type in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        data = value.encode("utf-8") if isinstance(value, str) else value
        chunks.append(head.encode("utf-8") + b"\r\n" + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


SG_HEADERS = (
    "Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn Tue, 04 Mar 2025 14:12:11 +0000 (UTC)\n"
    "From: =?UTF-8?Q?Camila_Restrepo_G=C3=B3mez?= <Camila.Restrepo@gmail.com>\n"
    "Date: Tue, 4 Mar 2025 09:12:03 -0500\n"
    "Message-ID: <CAGv5x+sendgrid-1@mail.gmail.com>\n"
    f"In-Reply-To: <{OUR_SES_ID}>\n"
    f"References: <{OUR_SES_ID}>\n"
    "Subject: =?ISO-8859-1?Q?Re:_Env=EDo?=\n"
    "To: soporte@parse.tienda.example\n"
    'Content-Type: multipart/mixed; boundary="0000000000009a"\n'
)


SG_ATTACHMENT_INFO = {
    "attachment1": {"filename": "guía.png", "name": "guía.png", "type": "image/png", "content-id": "ii_m7x1"},
    "attachment2": {"filename": "factura.pdf", "name": "factura.pdf", "type": "application/pdf"},
}
SG_CHARSETS = {"to": "UTF-8", "html": "UTF-8", "subject": "iso-8859-1", "from": "UTF-8", "text": "iso-8859-1"}


def sendgrid_default(*, message_id: bool = True, text_charset: str = "iso-8859-1") -> bytes:
    headers = SG_HEADERS if message_id else SG_HEADERS.replace("Message-ID: <CAGv5x+sendgrid-1@mail.gmail.com>\n", "")
    text = "¿Ya salió el envío?\n\nEl lun, 3 mar 2025 a las 10:00, Soporte <soporte@tienda.example> escribió:\n> Hola"
    return multipart(
        [
            ("headers", headers, None, None),
            ("dkim", "{@gmail.com : pass}", None, None),
            ("content-ids", '{"ii_m7x1":"attachment1"}', None, None),
            ("to", "soporte@parse.tienda.example", None, None),
            ("html", "<div>¿Ya salió el envío?</div>", None, None),
            ("from", "Camila Restrepo Gómez <Camila.Restrepo@gmail.com>", None, None),
            ("text", text.encode(text_charset), None, None),
            ("sender_ip", "209.85.167.41", None, None),
            ("spam_report", "Spam detection software...", None, None),
            ("envelope", '{"to":["soporte@parse.tienda.example"],"from":"Camila.Restrepo@gmail.com"}', None, None),
            ("attachments", "2", None, None),
            ("subject", "Re: Envío".encode("iso-8859-1"), None, None),
            ("attachment-info", json.dumps(SG_ATTACHMENT_INFO), None, None),
            ("spam_score", "0.012", None, None),
            ("charsets", json.dumps({**SG_CHARSETS, "text": text_charset}), None, None),
            ("SPF", "pass", None, None),
            ("attachment1", PNG, "guía.png", "image/png"),
            ("attachment2", PDF, "factura.pdf", "application/pdf"),
        ]
    )


def sendgrid_raw(raw: bytes = GMAIL_ES) -> bytes:
    return multipart(
        [
            ("email", raw, None, None),
            ("to", "soporte@parse.tienda.example", None, None),
            ("from", "Camila <Camila.Restrepo@gmail.com>", None, None),
            ("envelope", '{"to":["soporte@parse.tienda.example"],"from":"camila.restrepo@gmail.com"}', None, None),
            ("charsets", '{"to":"UTF-8","from":"UTF-8","subject":"UTF-8"}', None, None),
            ("SPF", "pass", None, None),
        ]
    )


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def sendgrid_envelope(body: bytes) -> InboundEnvelope:
    inbound = email_sendgrid.read_inbound(email_sendgrid.parse_form(body, FORM_TYPE))
    result = email_sendgrid.normalize(inbound, correlation_id="req-1", received_at=NOW, raw_ref="s3://p/k")
    (envelope,) = result.inbound
    return envelope


def test_sendgrid_default_mode_decodes_fields_with_their_charsets_and_reads_headers() -> None:
    envelope = sendgrid_envelope(sendgrid_default())
    assert (envelope.provider, envelope.provider_message_id) == ("sendgrid", "CAGv5x+sendgrid-1@mail.gmail.com")
    assert envelope.parts[0] == TextPart(text="¿Ya salió el envío?")
    assert envelope.subject == "Re: Envío"
    assert envelope.sender.value == "camila.restrepo@gmail.com"
    assert envelope.sender.name == "Camila Restrepo Gómez"
    assert envelope.recipient.value == "soporte@parse.tienda.example"
    assert envelope.in_reply_to == OUR_SES_ID
    assert envelope.references == (OUR_SES_ID,)
    assert envelope.occurred_at == datetime(2025, 3, 4, 14, 12, 3, tzinfo=UTC)
    assert envelope.parts[1:] == (
        MediaPart(provider_media_id="cid:ii_m7x1", mime_type="image/png", filename="guía.png", size_bytes=len(PNG)),
        MediaPart(provider_media_id="form:attachment2", mime_type="application/pdf", filename="factura.pdf",
                  size_bytes=len(PDF)),
    )  # fmt: skip
    assert envelope.metadata["sendgrid_mode"] == "parsed"
    assert (envelope.metadata["spf"], envelope.metadata["spam_score"]) == ("pass", "0.012")


def test_sendgrid_raw_mode_parses_the_mime_like_ses_does() -> None:
    envelope = sendgrid_envelope(sendgrid_raw())
    ses_envelope = one(GMAIL_ES)
    assert envelope.provider_message_id == "CAGv5x+Q9k2aT7Lq-x3Hn0m1P=w@mail.gmail.com"
    assert envelope.parts == ses_envelope.parts
    assert (envelope.subject, envelope.in_reply_to, envelope.references) == (
        ses_envelope.subject, ses_envelope.in_reply_to, ses_envelope.references,
    )  # fmt: skip
    assert envelope.metadata["sendgrid_mode"] == "raw"


def test_sendgrid_stores_the_mime_in_raw_mode_and_the_request_in_default_mode_under_a_stable_key() -> None:
    raw_mode = email_sendgrid.read_inbound(email_sendgrid.parse_form(sendgrid_raw(), FORM_TYPE))
    assert (raw_mode.raw, raw_mode.raw_content_type) == (GMAIL_ES, "message/rfc822")
    assert raw_mode.raw_key.startswith("inbound-email/sendgrid/")
    assert raw_mode.raw_key.endswith(".eml")
    body = sendgrid_default()
    default_mode = email_sendgrid.read_inbound(email_sendgrid.parse_form(body, FORM_TYPE))
    assert (default_mode.raw, default_mode.raw_content_type) == (body, FORM_TYPE)
    assert default_mode.raw_key.endswith(".form")


def test_without_a_message_id_the_dedup_key_hashes_the_mail_not_the_request() -> None:
    # SendGrid may pick another boundary when it retries; the key must not change with it.
    first = email_sendgrid.read_inbound(email_sendgrid.parse_form(sendgrid_default(message_id=False), FORM_TYPE))
    other_boundary = sendgrid_default(message_id=False).replace(BOUNDARY.encode(), b"AbCdEf0123")
    second = email_sendgrid.read_inbound(
        email_sendgrid.parse_form(other_boundary, "multipart/form-data; boundary=AbCdEf0123")
    )
    assert first.provider_message_id == second.provider_message_id
    assert first.provider_message_id.startswith("sha256:")


def api_event(body: bytes, *, base64_encoded: bool) -> APIGatewayProxyEventV2:
    return APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "routeKey": "POST /webhooks/email/sendgrid",
            "rawPath": "/webhooks/email/sendgrid",
            "headers": {"content-type": FORM_TYPE},
            "requestContext": {"requestId": "req-1", "http": {"method": "POST", "path": "/webhooks/email/sendgrid"}},
            "body": base64.b64encode(body).decode() if base64_encoded else body.decode("utf-8"),
            "isBase64Encoded": base64_encoded,
        }
    )


@pytest.mark.parametrize("base64_encoded", [True, False])
def test_a_body_arrives_the_same_whether_api_gateway_base64_encoded_it_or_not(base64_encoded: bool) -> None:
    # A text body is only possible for valid UTF-8 (the twin, like API Gateway, base64-encodes multipart anyway).
    body = sendgrid_raw(GMAIL_ES)
    event = api_event(body, base64_encoded=base64_encoded)
    form = email_sendgrid.parse_form(raw_body(event), event.headers["content-type"])
    assert form.body == body
    assert email_sendgrid.read_inbound(form).mail.text.startswith("Hola, el pedido 4411")


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"email=hola", "application/x-www-form-urlencoded", UnsupportedMediaType),
        (b"--x\r\n", "multipart/form-data", UnsupportedMediaType),  # no boundary
        (b"not multipart at all", FORM_TYPE, InvalidInput),
        (multipart([("text", "hola", None, None)]), FORM_TYPE, InvalidInput),  # no envelope
        (multipart([("envelope", "{not json", None, None), ("headers", "From: a@b.c", None, None)]), FORM_TYPE,
         InvalidInput),
        (multipart([("envelope", '{"to":["a@b.c"],"from":"d@e.f"}', None, None)]), FORM_TYPE, InvalidInput),
    ],
)  # fmt: skip
def test_malformed_requests_are_invalid_input(body: bytes, content_type: str, error: type[HiloError]) -> None:
    with pytest.raises(error):
        email_sendgrid.read_inbound(email_sendgrid.parse_form(body, content_type))


SG_SETTINGS = settings_from({"HILO_SENDGRID_USER": "parse", "HILO_SENDGRID_PASSWORD": "s3cr3t:with-colon"})


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.mark.parametrize("header", [basic("parse:s3cr3t:with-colon"), "basic " + basic("parse:s3cr3t:with-colon")[6:]])
def test_the_configured_basic_credentials_are_accepted(header: str) -> None:
    email_sendgrid.verify_basic_auth(header, SG_SETTINGS)


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!", "Bearer abc", basic("parse:wrong"), basic("other:s3cr3t:with-colon"),
     basic("parse"), basic("PARSE:s3cr3t:with-colon"), basic(":")],
)  # fmt: skip
def test_missing_or_wrong_basic_credentials_are_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        email_sendgrid.verify_basic_auth(header, SG_SETTINGS)


def test_without_configured_credentials_every_request_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="HILO_SENDGRID_USER"):
        email_sendgrid.verify_basic_auth(basic("parse:x"), settings_from({"HILO_SENDGRID_USER": "parse"}))


# ------------------------------------------------------------------ properties

SAMPLES = (GMAIL_ES, OUTLOOK_EN, LATIN1_ES, HTML_ONLY, WITH_ATTACHMENTS)
_header_names = st.sampled_from(
    ["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Content-Type",
     "Content-Transfer-Encoding", "Content-Disposition", "Content-ID", "Auto-Submitted", "MIME-Version"]
)  # fmt: skip
_header_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["=?utf-8?Q?=C3=A1?=", "=?x?B?!!?=", "<a@b>", "<", "multipart/mixed; boundary=b",
                     "text/plain; charset=x", "base64", "quoted-printable", "attachment; filename*=UTF-8''%FF",
                     '"a" <>', "a@b, <c@d>, ;:,", "Mon, 32 Foo 99999 25:61:61 +9999"]),
)  # fmt: skip


@st.composite
def _mutated_mime(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["insert", "delete", "truncate", "flip"]))
        if action == "insert":
            raw[position:position] = draw(st.binary(min_size=1, max_size=20))
        elif action == "delete":
            del raw[position : position + draw(st.integers(1, 40))]
        elif action == "truncate":
            del raw[position:]
        elif raw:
            raw[min(position, len(raw) - 1)] ^= draw(st.integers(1, 255))
    return bytes(raw)


@st.composite
def _random_mime(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(_header_names, _header_values), max_size=8))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + draw(st.binary(max_size=300))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.binary(max_size=300), _mutated_mime(), _random_mime()))
def test_no_mime_makes_parsing_or_normalising_raise(raw: bytes) -> None:
    result = email.to_envelope(email.parse_mime(raw), delivery())
    assert isinstance(result, Normalized)
    assert len(result.inbound) + len(result.ignored) + len(result.rejected) == 1


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=400))
def test_strip_reply_and_html_to_text_never_raise_and_never_lose_everything(text: str) -> None:
    reply = email.strip_reply(text)
    assert bool(reply.text.strip()) == bool(text.strip())
    assert isinstance(email.html_to_text(text), str)


_field_names = st.sampled_from(
    ["headers", "text", "html", "from", "to", "subject", "envelope", "charsets", "attachments", "attachment-info",
     "attachment1", "attachment2", "email", "SPF", "dkim", "spam_score"]
)  # fmt: skip
_field_values = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b'{"to":["a@b.c"],"from":"d@e.f"}', b'{"to":"x","from":5}', b'{"text":"x-bogus"}',
                     b'{"attachment1":{"type":"???","content-id":"<>"}}', b"From: a@b.c\r\nMessage-ID: <x@y>", b"[]"]),
    st.sampled_from(SAMPLES),
)  # fmt: skip


@st.composite
def _multipart_bodies(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(_field_names, _field_values), max_size=8))
    body = multipart([(name, value, None, None) for name, value in fields])
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=10)) + body[cut:]
    return body


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(_multipart_bodies(), st.binary(max_size=200)))
def test_no_multipart_body_makes_sendgrid_parsing_raise_anything_but_a_hilo_error(body: bytes) -> None:
    try:
        inbound = email_sendgrid.read_inbound(email_sendgrid.parse_form(body, FORM_TYPE))
    except HiloError:
        return
    result = email_sendgrid.normalize(inbound, correlation_id="req-1", received_at=NOW, raw_ref=None)
    assert isinstance(result, Normalized)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)


@st.composite
def _mutated_notification(draw: st.DrawFn) -> str:
    document = ses_notification(OUTLOOK_EN, action=draw(st.sampled_from(["S3", "SNS"])))
    section = draw(st.sampled_from(["receipt", "mail", None]))
    target = document if section is None else document[section]
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(_json)
    return sns_body(document)


class NoS3:
    """Raw mail is never reached in the property: parsing and verdicts are under test."""

    def get_object(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")

    def put_object(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "PutObject")


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.text(max_size=100),
        _json.map(json.dumps),
        _json.map(lambda value: sns_body(value if isinstance(value, dict) else {"x": value})),
        _mutated_notification(),
    )
)
def test_no_record_makes_the_ses_parser_raise_anything_but_a_hilo_error(body: str) -> None:
    try:
        parsed = email_ses.parse_record(body)
        if not isinstance(parsed, str):
            email_ses.quarantine_reason(parsed)
            email_ses.fetch_raw(parsed, RawEmailStore("payloads", s3=NoS3()))
    except HiloError:
        return
