"""The providers' side of the webhooks: requests signed exactly as Twilio, Meta and Telegram sign them.

Used by the tests, the benchmarks and ``hilo demo`` to play a provider against a running stack. Written from the
providers' documented algorithms, apart from ``shared/providers`` (which verifies), so a mistake on one side is
not silently repeated on the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

Pairs = Sequence[tuple[str, str]]


def twilio_signature(url: str, params: Pairs, auth_token: str) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 (Auth Token) of the URL followed by each name+value, sorted."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_form(url: str, params: Pairs | Mapping[str, str], auth_token: str) -> tuple[bytes, dict[str, str]]:
    """A signed Twilio form POST to ``url``: (body, headers)."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": twilio_signature(url, pairs, auth_token),
    }
    return urlencode(pairs).encode(), headers


def meta_signature(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` + hex HMAC-SHA256 (App Secret) of the exact body bytes."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def meta_json(document: Any, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """A signed Meta notification: (body, headers). ``json.dumps`` escapes non-ASCII (``\\u00e1``) as Meta does."""
    body = json.dumps(document).encode()
    return body, {"content-type": "application/json", "x-hub-signature-256": meta_signature(body, app_secret)}


def telegram_json(update: Any, secret_token: str) -> tuple[bytes, dict[str, str]]:
    """A Telegram update as its webhook sends it: (body, headers with the secret token)."""
    headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": secret_token}
    return json.dumps(update).encode(), headers
