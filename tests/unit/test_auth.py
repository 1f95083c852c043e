"""The agent API trusts API Gateway's verified JWT claims, and locally only HILO_DEV_TOKEN."""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import CHALLENGE, Principal, authenticate
from shared.errors import Unauthorized
from shared.settings import settings_from

LOCAL = settings_from({"HILO_LOCAL_MODE": "true", "HILO_DEV_TOKEN": "dev-token-123"})
AWS = settings_from({"HILO_DEV_TOKEN": "dev-token-123"})  # stored by mistake in AWS: must not work there


def event(authorization: str | None = None, claims: dict[str, Any] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"http": {"method": "GET"}}
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {"headers": {"authorization": authorization} if authorization else {}, "requestContext": context}


def test_verified_claims_name_the_agent_and_their_scopes() -> None:
    claims = {"sub": "agent-7f3a", "scope": "hilo/customers.read hilo/customers.write", "iss": "https://idp"}
    assert authenticate(event("Bearer eyJ...", claims), AWS) == Principal(
        subject="agent-7f3a", scopes=frozenset({"hilo/customers.read", "hilo/customers.write"})
    )


def test_a_client_credentials_token_is_named_by_its_client_id() -> None:
    assert authenticate(event("Bearer eyJ...", {"client_id": "crm-sync"}), AWS).subject == "crm-sync"


def test_the_dev_token_works_locally() -> None:
    assert authenticate(event("Bearer dev-token-123"), LOCAL) == Principal(subject="dev", dev=True)


@pytest.mark.parametrize(
    ("settings", "authorization"),
    [
        (LOCAL, None),
        (LOCAL, "Bearer wrong-token"),
        (LOCAL, "Basic ZGV2LXRva2VuLTEyMw=="),
        (LOCAL, "Bearer "),
        (AWS, "Bearer dev-token-123"),  # no authorizer claims in AWS: fail closed, whatever the token
        (AWS, None),
    ],
)
def test_anything_else_is_a_401_that_names_the_bearer_scheme(settings: Any, authorization: str | None) -> None:
    with pytest.raises(Unauthorized) as raised:
        authenticate(event(authorization), settings)
    assert raised.value.challenge == CHALLENGE
    assert "dev-token-123" not in raised.value.message
