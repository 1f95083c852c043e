"""Who is calling the agent API and ``/v1/events``.

In AWS, API Gateway's JWT authorizer (``AgentJwt`` in template.yaml: the stack's Cognito user pool, or the
company's own identity provider) verifies the token's signature, issuer, audience and expiry before any function
runs, and hands the function the verified claims. So there is no token crypto here, and none at cold start.

Locally the twin asks for a bearer token but cannot verify one; there ``HILO_DEV_TOKEN`` is the only token
accepted, and only in local mode (``Settings.accepts_dev_token``). In AWS a request without verified claims is
refused even if it carries the dev token: a route that lost its authorizer fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.errors import Unauthorized
from shared.settings import Settings
from shared.webhooks import secrets_equal

CHALLENGE: Final = 'Bearer realm="hilo"'
DEV_SUBJECT: Final = "dev"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's subject (an agent, or a core system's client id) and its scopes."""

    subject: str
    scopes: frozenset[str] = frozenset()
    dev: bool = False


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (headers lower-cased, as HTTP API sends them)."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate(event: Mapping[str, Any], settings: Settings) -> Principal:
    """Identify the caller of an HTTP API (payload 2.0) request.

    Parameters
    ----------
    event : Mapping
        The raw HTTP API event.
    settings : Settings
        Hilo's settings (local mode and ``HILO_DEV_TOKEN``).

    Returns
    -------
    Principal
        From the authorizer's verified claims (``sub``, else ``client_id``; ``scope`` split on spaces), or the
        dev principal for ``HILO_DEV_TOKEN`` in local mode.

    Raises
    ------
    Unauthorized
        No verified claims and no accepted dev token (the 401 names the Bearer scheme).
    """
    context = event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    subject = claims.get("sub") or claims.get("client_id")
    if isinstance(subject, str) and subject:
        scopes = claims.get("scope")
        return Principal(subject=subject, scopes=frozenset(scopes.split()) if isinstance(scopes, str) else frozenset())
    token = bearer_token(event.get("headers") or {})
    if token is None:
        raise Unauthorized("A bearer token is required (Authorization: Bearer <token>).", challenge=CHALLENGE)
    if settings.accepts_dev_token and settings.dev_token is not None:
        if secrets_equal(token, settings.dev_token.get_secret_value()):
            return Principal(subject=DEV_SUBJECT, dev=True)
        raise Unauthorized("Locally only HILO_DEV_TOKEN is accepted, and this is not it.", challenge=CHALLENGE)
    raise Unauthorized("The token was not verified by the API's JWT authorizer.", challenge=CHALLENGE)
