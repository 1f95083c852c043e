"""Web chat widget API (HTTP API): POST /v1/chat/sessions, POST and GET /v1/chat/sessions/{id}/messages.

Visitor messages are stored in the session's log (ProfileTable) and enqueued on InboundQueue; the GET returns the
log both ways (agent replies are appended by the web chat sender).
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from shared.adapters.chat_store import chat_service
from shared.http import api_handler, create_app, parse_json_body, raw_body
from shared.providers import webchat

MAX_BODY_BYTES = 16 * 1024

app = create_app()


@functools.cache
def service() -> webchat.ChatService:
    return chat_service()


def _created(body: dict[str, Any], status: int = 201) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.post("/v1/chat/sessions")
def start_session() -> Response[dict[str, Any]]:
    # The body is optional: an anonymous visitor sends none.
    empty = not raw_body(app.current_event, max_bytes=MAX_BODY_BYTES).strip()
    request = webchat.SessionRequest() if empty else parse_json_body(app.current_event, webchat.SessionRequest,
                                                                      max_bytes=MAX_BODY_BYTES)  # fmt: skip
    return _created(service().start(request))


@app.post("/v1/chat/sessions/<session_id>/messages")
def send_message(session_id: str) -> Response[dict[str, Any]]:
    event = app.current_event
    token = webchat.token_from(event.headers or {})
    webchat.authorize(token, service().key(), service().clock(), session_id)  # before reading the body
    request = parse_json_body(event, webchat.MessageRequest, max_bytes=MAX_BODY_BYTES)
    answer, created = service().send(session_id, token, request, event.request_context.request_id)
    return _created(answer, 201 if created else 200)


@app.get("/v1/chat/sessions/<session_id>/messages")
def list_messages(session_id: str) -> dict[str, Any]:
    event = app.current_event
    return service().history(
        session_id,
        webchat.token_from(event.headers or {}),
        event.get_query_string_value("after"),
        event.get_query_string_value("limit"),
    )


lambda_handler = api_handler(app)
