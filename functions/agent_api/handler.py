"""The agent API's customer reads (HTTP API, behind the AgentJwt authorizer): find a customer by any identifier,
their card, timeline and conversations; a conversation by id. Writes (visits, notes, links, merges) answer 501
until they land."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.profile_store import ProfileStore
from shared.auth import authenticate
from shared.customers import CustomerQueries
from shared.errors import NotImplementedYet
from shared.http import api_handler, create_app
from shared.identity.normaliser import Normaliser

app = create_app()


@dataclass(frozen=True)
class Ports:
    settings: SettingsLoader
    queries: CustomerQueries


@functools.cache
def ports() -> Ports:
    settings = SettingsLoader(os.environ)
    normaliser = Normaliser(settings.get().default_region)
    return Ports(settings, CustomerQueries(ProfileStore(os.environ["PROFILE_TABLE_NAME"]), normaliser))


def queries() -> CustomerQueries:
    """The read use cases, once the caller is known to be an agent (or a core system) with a verified token."""
    authenticate(app.current_event.raw_event, ports().settings.get())
    return ports().queries


def query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


@app.get("/v1/customers")
def find_customer() -> dict[str, Any]:
    return queries().find(query())


@app.get("/v1/customers/<customer_id>")
def customer_card(customer_id: str) -> dict[str, Any]:
    return queries().card(customer_id)


@app.get("/v1/customers/<customer_id>/timeline")
def customer_timeline(customer_id: str) -> dict[str, Any]:
    return queries().timeline(customer_id, query())


@app.get("/v1/customers/<customer_id>/conversations")
def customer_conversations(customer_id: str) -> dict[str, Any]:
    return queries().conversations(customer_id, query())


@app.get("/v1/conversations/<conversation_id>")
def conversation(conversation_id: str) -> dict[str, Any]:
    return queries().conversation(conversation_id)


@app.post("/v1/customers/<customer_id>/<action>")
def not_built_yet(customer_id: str, action: str) -> None:
    queries()
    raise NotImplementedYet(f"POST /v1/customers/{{id}}/{action[:32]} is part of Hilo's API but is not built yet.")


lambda_handler = api_handler(app)
