"""POST /webhooks/twilio/voice and /webhooks/twilio/voice/status (HTTP API): Twilio Voice → InboundQueue.

An incoming call is answered with a Spanish IVR (``<Gather>`` of the caller's ID digits, then ``<Enqueue>`` to the
``soporte`` queue); its ``?step=id`` callback enqueues the digits; the status callback records duration and outcome.
"""

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


def twiml(body: str) -> Response[str]:
    return Response(status_code=200, content_type=twilio.TWIML_CONTENT_TYPE, body=body)


@app.post("/webhooks/twilio/voice")
def incoming_call() -> Response[str]:
    event = app.current_event
    params = twilio.verify_event(event, ports().settings.get())
    normalized, answer = twilio.answer_call(
        params, raw_query=event.raw_query_string or "", correlation_id=event.request_context.request_id, now=now()
    )
    ports().deliver(normalized, channel="voice")
    return twiml(answer)


@app.post("/webhooks/twilio/voice/status")
def call_status() -> Response[str]:
    event = app.current_event
    params = twilio.verify_event(event, ports().settings.get())
    normalized = twilio.normalize_call_status(params, correlation_id=event.request_context.request_id, now=now())
    ports().deliver(normalized, channel="voice")
    return twiml(twilio.EMPTY_TWIML)


lambda_handler = api_handler(app)
