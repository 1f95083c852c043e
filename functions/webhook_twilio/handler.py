"""POST /webhooks/twilio/messages and /webhooks/twilio/status (HTTP API): Twilio Messaging → InboundQueue and
StatusQueue; answers empty TwiML once enqueued (replies go out later through the REST API)."""

from __future__ import annotations

import functools

from aws_lambda_powertools.event_handler import Response

from shared.clock import now
from shared.http import api_handler, create_app
from shared.providers import twilio
from shared.webhooks import WebhookPorts, webhook_ports

app = create_app()


@functools.cache
def ports() -> WebhookPorts:
    return webhook_ports()


def empty_twiml() -> Response[str]:
    return Response(status_code=200, content_type=twilio.TWIML_CONTENT_TYPE, body=twilio.EMPTY_TWIML)


@app.post("/webhooks/twilio/messages")
def receive_message() -> Response[str]:
    event = app.current_event
    params = twilio.verify_event(event, ports().settings.get())
    normalized = twilio.normalize_message(params, correlation_id=event.request_context.request_id, now=now())
    ports().deliver(normalized, channel="twilio")
    return empty_twiml()


@app.post("/webhooks/twilio/status")
def receive_status() -> Response[str]:
    event = app.current_event
    params = twilio.verify_event(event, ports().settings.get())
    normalized = twilio.normalize_status(params, correlation_id=event.request_context.request_id, now=now())
    ports().deliver(normalized, channel="twilio")
    return empty_twiml()


lambda_handler = api_handler(app)
