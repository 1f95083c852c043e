"""POST /webhooks/email/sendgrid (HTTP API): SendGrid Inbound Parse (basic auth, multipart) → raw mail in the
payload bucket and an InboundEnvelope on InboundQueue; answers 200 once both are stored."""

from __future__ import annotations

import functools

from shared.adapters.raw_email_store import RawEmailStore
from shared.clock import now
from shared.http import api_handler, create_app, raw_body
from shared.providers import email_sendgrid as sendgrid
from shared.webhooks import WebhookPorts, webhook_ports

app = create_app()


@functools.cache
def ports() -> WebhookPorts:
    return webhook_ports()


@functools.cache
def store() -> RawEmailStore:
    return RawEmailStore.from_environ()


@app.post("/webhooks/email/sendgrid")
def receive_mail() -> dict[str, str]:
    event = app.current_event
    headers = event.headers or {}
    sendgrid.verify_basic_auth(headers.get("authorization"), ports().settings.get())
    form = sendgrid.parse_form(raw_body(event, max_bytes=sendgrid.MAX_BODY_BYTES), headers.get("content-type"))
    inbound = sendgrid.read_inbound(form)
    raw_ref = store().put(inbound.raw_key, inbound.raw, inbound.raw_content_type)
    correlation_id = event.request_context.request_id
    normalized = sendgrid.normalize(inbound, correlation_id=correlation_id, received_at=now(), raw_ref=raw_ref)
    ports().deliver(normalized, channel="email")
    return {}


lambda_handler = api_handler(app)
