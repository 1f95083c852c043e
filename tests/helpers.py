"""Small helpers shared by the tests: real HTTP calls to a running local stack."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None) -> HttpResult:
    """Send one request over real HTTP and return status, lower-cased headers and body (errors included)."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - tests
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local stack only
            return HttpResult(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
