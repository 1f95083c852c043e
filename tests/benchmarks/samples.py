"""Realistic, correctly signed requests for each HTTP function, so benchmarks measure the real path
(verify → normalise → enqueue), not a fast rejection. Secrets are the benchmark's own."""

from __future__ import annotations

import base64
import json

from hilo.local import providers
from hilo.local.apigw import HttpRequest

SECRETS = {
    "HILO_TWILIO_AUTH_TOKEN": "bench-twilio-token",
    "HILO_META_APP_SECRET": "bench-meta-secret",
    "HILO_META_VERIFY_TOKEN": "bench-verify",
    "HILO_TELEGRAM_SECRET_TOKEN": "bench-telegram-token",
    "HILO_SENDGRID_USER": "parse",
    "HILO_SENDGRID_PASSWORD": "bench-sendgrid-password",
}


def _twilio(public_url: str, path: str, params: dict[str, str]) -> HttpRequest:
    body, headers = providers.twilio_form(public_url + path, params, SECRETS["HILO_TWILIO_AUTH_TOKEN"])
    return HttpRequest("POST", path, list(headers.items()), body)


def _meta(path: str, document: dict[str, object]) -> HttpRequest:
    body, headers = providers.meta_json(document, SECRETS["HILO_META_APP_SECRET"])
    return HttpRequest("POST", path, list(headers.items()), body)


def _sendgrid_parse() -> HttpRequest:
    """Inbound Parse in its default mode: basic auth from the Parse URL, multipart/form-data with SendGrid's fields."""
    boundary = "xYzZY"
    fields = {
        "headers": "From: Ana <ana@example.com>\nTo: soporte@parse.example.com\nSubject: Factura\n"
        "Date: Tue, 4 Mar 2025 09:12:03 -0500\nMessage-ID: <CAGbench01@mail.gmail.com>\n",
        "text": "Hola, ¿me reenvían la factura de marzo?\n\nEl lun, 3 mar 2025, Soporte escribió:\n> Hola Ana",
        "html": "<div>Hola, ¿me reenvían la factura de marzo?</div>",
        "from": "Ana <ana@example.com>",
        "to": "soporte@parse.example.com",
        "subject": "Factura",
        "envelope": '{"to":["soporte@parse.example.com"],"from":"ana@example.com"}',
        "charsets": '{"to":"UTF-8","html":"UTF-8","subject":"UTF-8","from":"UTF-8","text":"UTF-8"}',
        "SPF": "pass",
        "dkim": "{@gmail.com : pass}",
        "spam_score": "0.011",
        "attachments": "0",
    }
    body = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        + f"--{boundary}--\r\n"
    )
    credentials = base64.b64encode(f"{SECRETS['HILO_SENDGRID_USER']}:{SECRETS['HILO_SENDGRID_PASSWORD']}".encode())
    headers = [
        ("content-type", f"multipart/form-data; boundary={boundary}"),
        ("authorization", f"Basic {credentials.decode()}"),
    ]
    return HttpRequest("POST", "/webhooks/email/sendgrid", headers, body.encode())


def sample_request(route_key: str, public_url: str) -> HttpRequest | None:
    """A realistic request for ``route_key``, or None when the benchmark has no sample for it."""
    wa_message = {
        "from": "573001234567",
        "id": "wamid.HBgMNTczMDAxMjM0NTY3",
        "timestamp": "1795387940",
        "type": "text",
        "text": {"body": "¡Hola! ¿Tienen el televisor en 55 pulgadas?"},
    }
    page_message = {
        "sender": {"id": "24512345678901234"},
        "recipient": {"id": "10987654321"},
        "timestamp": 1795387940000,
        "message": {"mid": "m_AbCdEf123", "text": "Hola, quiero cambiar mi pedido"},
    }
    samples = {
        "POST /webhooks/twilio/messages": lambda: _twilio(
            public_url,
            "/webhooks/twilio/messages",
            {
                "MessageSid": "SM0123456789abcdef0123456789abcdef",
                "AccountSid": "AC0123456789abcdef0123456789abcdef",
                "From": "whatsapp:+573001234567",
                "To": "whatsapp:+13055550123",
                "Body": "Hola, ¿a qué hora abren?",
                "NumMedia": "0",
                "ProfileName": "Ana María",
                "WaId": "573001234567",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            },
        ),
        "POST /webhooks/twilio/voice": lambda: _twilio(
            public_url,
            "/webhooks/twilio/voice",
            {
                "CallSid": "CA0123456789abcdef0123456789abcdef",
                "AccountSid": "AC0123456789abcdef0123456789abcdef",
                "From": "+573001234567",
                "To": "+13055550123",
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            },
        ),
        "POST /webhooks/whatsapp": lambda: _meta(
            "/webhooks/whatsapp",
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "1029384756",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "13055550123",
                                        "phone_number_id": "1122334455",
                                    },
                                    "contacts": [{"profile": {"name": "Ana María"}, "wa_id": "573001234567"}],
                                    "messages": [wa_message],
                                },
                            }
                        ],
                    }
                ],
            },
        ),
        "POST /webhooks/messenger": lambda: _meta(
            "/webhooks/messenger",
            {"object": "page", "entry": [{"id": "10987654321", "time": 1795387940000, "messaging": [page_message]}]},
        ),
        "POST /webhooks/instagram": lambda: _meta(
            "/webhooks/instagram",
            {
                "object": "instagram",
                "entry": [{"id": "10987654321", "time": 1795387940000, "messaging": [page_message]}],
            },
        ),
        "POST /webhooks/telegram": lambda: HttpRequest(
            "POST",
            "/webhooks/telegram",
            [
                ("content-type", "application/json"),
                ("x-telegram-bot-api-secret-token", SECRETS["HILO_TELEGRAM_SECRET_TOKEN"]),
            ],
            json.dumps(
                {
                    "update_id": 912345678,
                    "message": {
                        "message_id": 42,
                        "date": 1795387940,
                        "text": "Hola, necesito ayuda con mi factura",
                        "from": {"id": 123456789, "is_bot": False, "first_name": "Ana", "language_code": "es"},
                        "chat": {"id": 123456789, "type": "private", "first_name": "Ana"},
                    },
                }
            ).encode(),
        ),
        "POST /webhooks/email/sendgrid": _sendgrid_parse,
        "POST /v1/chat/sessions": lambda: HttpRequest(
            "POST",
            "/v1/chat/sessions",
            [("content-type", "application/json")],
            json.dumps({"name": "Ana", "locale": "es"}).encode(),
        ),
    }
    build = samples.get(route_key)
    return build() if build else None
