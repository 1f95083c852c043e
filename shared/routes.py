"""HTTP API route keys and how API Gateway picks one.

One implementation serves both sides: the fallback function uses it to tell a wrong method (405) from an
unknown path (404), and the local twin uses it to route requests exactly as API Gateway does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

DEFAULT_ROUTE = "$default"
_VARIABLE = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class RouteKey:
    """A parsed route key such as ``GET /v1/chat/sessions/{id}/messages`` or ``ANY /files/{proxy+}``."""

    method: str
    path: str
    segments: tuple[str, ...] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, key: str) -> RouteKey:
        """Parse ``"<METHOD> <path>"``; raise ValueError on anything API Gateway would reject."""
        parts = key.strip().split(" ")
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise ValueError(f"route key {key!r} is not '<METHOD> /path'")
        method, path = parts[0].upper(), parts[1]
        segments = tuple(path.strip("/").split("/")) if path != "/" else ()
        for index, segment in enumerate(segments):
            variable = _VARIABLE.match(segment)
            if variable and variable.group(2) and index != len(segments) - 1:
                raise ValueError(f"route key {key!r}: a greedy variable must be the last segment")
        return cls(method=method, path=path, segments=segments)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def match_path(self, path: str) -> dict[str, str] | None:
        """Return the path parameters when ``path`` (as sent, percent-encoded) fits this route, else None."""
        parts = path.strip("/").split("/") if path.strip("/") else []
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            variable = _VARIABLE.match(segment)
            if variable and variable.group(2):  # greedy: takes the rest, at least one segment
                rest = parts[index:]
                if not rest or not all(rest):
                    return None
                params[variable.group(1)] = unquote("/".join(rest))
                return params
            if index >= len(parts) or not parts[index]:
                return None
            if variable:
                params[variable.group(1)] = unquote(parts[index])
            elif unquote(parts[index]) != segment:
                return None
        return params if len(parts) == len(self.segments) else None

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Higher wins: no greedy variable, more literal segments, more segments, a method over ANY."""
        literal = sum(1 for segment in self.segments if not _VARIABLE.match(segment))
        greedy = any((m := _VARIABLE.match(segment)) and m.group(2) for segment in self.segments)
        return (0 if greedy else 1, literal, len(self.segments), 0 if self.method == "ANY" else 1)


@dataclass(frozen=True)
class RouteMatch:
    """The route API Gateway would pick for a request, with its decoded path parameters."""

    route_key: str
    path_parameters: dict[str, str]


class RouteTable:
    """The set of route keys of one HTTP API."""

    def __init__(self, route_keys: Iterable[str]) -> None:
        keys = list(route_keys)
        self.has_default = DEFAULT_ROUTE in keys
        self.routes = sorted(
            (RouteKey.parse(key) for key in keys if key != DEFAULT_ROUTE), key=lambda r: r.specificity, reverse=True
        )

    def match(self, method: str, path: str) -> RouteMatch | None:
        """Pick the most specific route for ``method path``; None means only ``$default`` (if any) applies."""
        method = method.upper()
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            params = route.match_path(path)
            if params is not None:
                return RouteMatch(route_key=str(route), path_parameters=params)
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """The methods some route accepts for ``path`` (empty when the path itself is unknown)."""
        methods = {route.method for route in self.routes if route.match_path(path) is not None}
        if "ANY" in methods:
            return ["ANY"]
        return sorted(methods)
