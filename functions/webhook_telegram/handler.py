"""POST /webhooks/telegram (HTTP API): Telegram Bot API updates → InboundQueue; answers 200 once enqueued."""

from __future__ import annotations

import functools

from shared.clock import now
from shared.http import api_handler, create_app, raw_body
from shared.providers import telegram
from shared.webhooks import WebhookPorts, webhook_ports

MAX_BODY_BYTES = 1024 * 1024

app = create_app()


@functools.cache
def ports() -> WebhookPorts:
    return webhook_ports()


@app.post("/webhooks/telegram")
def receive_update() -> dict[str, str]:
    event = app.current_event
    token = ports().settings.get().telegram_secret_token
    telegram.verify_secret_token(
        (event.headers or {}).get(telegram.SECRET_HEADER), token.get_secret_value() if token else None
    )
    update = telegram.parse_update(raw_body(event, max_bytes=MAX_BODY_BYTES))
    normalized = telegram.normalize(update, correlation_id=event.request_context.request_id, received_at=now())
    ports().deliver(normalized, channel="telegram")
    return telegram.callback_answer(update)


lambda_handler = api_handler(app)
