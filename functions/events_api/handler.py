"""POST /v1/events (HTTP API, behind the AgentJwt authorizer): a core system's or CRM's domain event. 202 with the
event id, its customer (found by the identifier given, or created as a lead) and whether it is a repeat; the event
goes to EventsQueue and IntegrationBus once per sender id within 8 days (shared/core_events.py)."""

from __future__ import annotations

import functools
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import RootModel

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.core_event_store import CoreEventStore
from shared.adapters.event_publisher import EventPublisher
from shared.auth import authenticate
from shared.clock import now
from shared.core_events import CoreEvents, Sender, parse_body
from shared.errors import MethodNotAllowed
from shared.http import api_handler, create_app, parse_json_body
from shared.identity.normaliser import Normaliser
from shared.observability import logger, metrics

#: The largest body read: ``data`` may hold 32 KB of JSON, and a pretty-printed envelope around it some more.
MAX_BODY_BYTES = 64 * 1024

app = create_app()


@dataclass(frozen=True)
class Ports:
    settings: SettingsLoader
    events: CoreEvents


@functools.cache
def ports() -> Ports:
    settings = SettingsLoader(os.environ)
    store = CoreEventStore(os.environ["PROFILE_TABLE_NAME"])
    publisher = EventPublisher(os.environ["EVENTS_QUEUE_URL"], os.environ["EVENT_BUS_NAME"])
    return Ports(settings, CoreEvents(store, publisher, Normaliser(settings.get().default_region), now))


@app.post("/v1/events")
def accept_event() -> Response[str]:
    event = app.current_event
    caller = authenticate(event.raw_event, ports().settings.get())  # before reading the body
    body = parse_body(json_body())
    sender = Sender(caller.subject, event.request_context.request_id or str(uuid.uuid4()))
    accepted = ports().events.accept(body, sender)
    logger.info("core event accepted", extra={"event_id": accepted.event_id, "event_type": body.type,
                "customer_id": accepted.customer_id, "duplicate": accepted.duplicate})  # fmt: skip
    metrics.add_metric(name="CoreEventsDuplicate" if accepted.duplicate else "CoreEventsAccepted", unit="Count",
                       value=1)  # fmt: skip
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(accepted.body(), separators=(",", ":")))  # fmt: skip


@app.route("/v1/events", method=["GET", "PUT", "PATCH", "DELETE"])
def other_method() -> None:
    raise MethodNotAllowed(f"{app.current_event.request_context.http.method} is not allowed on /v1/events; use POST.",
                           allowed=["POST"])  # fmt: skip


class _Json(RootModel[Any]):
    """Any JSON document: the contract's rules are ``parse_body``'s (422), not the reader's."""


def json_body() -> Any:
    """The body as JSON: 413 past ``MAX_BODY_BYTES``, 415 for another content type, 400 when it is not JSON."""
    return parse_json_body(app.current_event, _Json, max_bytes=MAX_BODY_BYTES).root


lambda_handler = api_handler(app)
