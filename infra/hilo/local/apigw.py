"""API Gateway HTTP API (payload format 2.0) in front of the local functions.

What it reproduces, because handlers depend on it: raw path and raw query string as sent, lower-cased headers
with repeats joined by commas, cookies moved out of the headers, path parameters, ``requestContext.http``,
bodies base64-encoded unless their Content-Type is text, the 2.0 response rules (a bare JSON result means 200),
route priority with ``$default`` last, API Gateway's own JSON errors (404, 413, 500, 503) and CORS preflight.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from hilo.local.runtime import FunctionPool, InvocationError
from shared.routes import DEFAULT_ROUTE, RouteTable

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
INTEGRATION_TIMEOUT_S = 30.0
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "application/ecmascript")


def is_text_content(content_type: str) -> bool:
    """Whether API Gateway passes a body of this Content-Type as text (otherwise it base64-encodes it)."""
    mime = content_type.split(";")[0].strip().lower()
    return mime.startswith(_TEXT_TYPES) or mime.endswith(("+json", "+xml"))


@dataclass(frozen=True)
class HttpRequest:
    """A request as it reached the API: method, raw target, headers in arrival order, body bytes."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass
class HttpResponse:
    """What the API sends back: status, header list (Set-Cookie may repeat), body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def gateway_error(status: int, message: str) -> HttpResponse:
    """API Gateway's own error answer: ``{"message": ...}`` as JSON."""
    return HttpResponse(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


def build_event(
    request: HttpRequest, route_key: str, path_parameters: Mapping[str, str], api_id: str, account_id: str
) -> dict[str, Any]:
    """The payload-2.0 event API Gateway would send for ``request`` on route ``route_key``."""
    raw_path, _, raw_query = request.target.partition("?")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        if is_text_content(headers.get("content-type", "")):
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
    return event


def map_response(result: Any) -> HttpResponse:
    """Turn a function's return value into the HTTP response, by payload-2.0 rules."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            return gateway_error(500, "Internal Server Error")
        headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name).lower(), str(value)) for value in values)
        headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        if data and not any(name == "content-type" for name, _ in headers):
            headers.append(("content-type", "text/plain; charset=utf-8"))
        return HttpResponse(status, headers, data)
    return HttpResponse(200, [("content-type", "application/json")], json.dumps(result).encode("utf-8"))


@dataclass(frozen=True)
class Cors:
    """An HTTP API's CorsConfiguration: API Gateway answers preflights itself and decorates responses."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    max_age: int | None

    def origin_for(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.allow_origins:
            return "*"
        return origin if origin in self.allow_origins else None


def _has_bearer_token(request: HttpRequest) -> bool:
    value = next((value for name, value in request.headers if name.lower() == "authorization"), "")
    scheme, _, token = value.strip().partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class HttpApi:
    """Routes requests to function pools as one HTTP API does; extra local-only routes may be mounted."""

    def __init__(
        self,
        routes: Mapping[str, FunctionPool],
        api_id: str,
        account_id: str,
        cors: Cors | None = None,
        local_routes: Mapping[str, Callable[[HttpRequest], HttpResponse]] | None = None,
        bearer_routes: Iterable[str] = (),
    ) -> None:
        self.routes = dict(routes)
        self.table = RouteTable(self.routes)
        self.api_id = api_id
        self.account_id = account_id
        self.cors = cors
        self.local_routes = dict(local_routes or {})
        #: Routes behind a JWT authorizer: like API Gateway, refuse them without a bearer token before any function
        #: runs (the token itself is not verified locally).
        self.bearer_routes = frozenset(bearer_routes)

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request."""
        path = request.target.partition("?")[0]
        local = self.local_routes.get(path)
        if local is not None:
            return local(request)
        origin = next((value for name, value in request.headers if name.lower() == "origin"), None)
        if self.cors and request.method == "OPTIONS" and self.cors.origin_for(origin):
            return self._preflight(origin)
        response = self._route(request, path)
        allowed_origin = self.cors.origin_for(origin) if self.cors else None
        if allowed_origin:
            response.headers.append(("access-control-allow-origin", allowed_origin))
        return response

    def _route(self, request: HttpRequest, path: str) -> HttpResponse:
        if len(request.body) > MAX_REQUEST_BYTES:
            return gateway_error(413, "Request Entity Too Large")
        match = self.table.match(request.method, path)
        if match is None and not self.table.has_default:
            return gateway_error(404, "Not Found")
        route_key, params = (match.route_key, match.path_parameters) if match else (DEFAULT_ROUTE, {})
        if route_key in self.bearer_routes and not _has_bearer_token(request):
            return gateway_error(401, "Unauthorized")
        event = build_event(request, route_key, params, self.api_id, self.account_id)
        pool = self.routes[route_key]
        started = time.monotonic()
        try:
            result = pool.invoke(event)
        except InvocationError as error:
            if (
                error.payload.get("errorType") == "Sandbox.Timedout"
                or time.monotonic() - started > INTEGRATION_TIMEOUT_S
            ):
                return gateway_error(503, "Service Unavailable")
            return gateway_error(500, "Internal Server Error")
        return map_response(result)

    def _preflight(self, origin: str | None) -> HttpResponse:
        assert self.cors is not None
        headers = [
            ("access-control-allow-origin", self.cors.origin_for(origin) or ""),
            ("access-control-allow-methods", ",".join(self.cors.allow_methods)),
            ("access-control-allow-headers", ",".join(self.cors.allow_headers)),
        ]
        if self.cors.max_age is not None:
            headers.append(("access-control-max-age", str(self.cors.max_age)))
        return HttpResponse(204, headers)


def serve(api: HttpApi, host: str, port: int) -> ThreadingHTTPServer:
    """Bind an HTTP server for ``api`` (call ``serve_forever`` on it from a thread)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "hilo-dev"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_REQUEST_BYTES:
                # Read what the client sends (up to a bound) so it sees the 413 instead of a broken pipe.
                remaining = min(length, 8 * MAX_REQUEST_BYTES)
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 20))):
                    remaining -= len(chunk)
                self._send(gateway_error(413, "Request Entity Too Large"))
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            try:
                response = api.handle(request)
            except Exception:
                response = gateway_error(500, "Internal Server Error")
            self._send(response)

        def _send(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                if name not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the stack logs each request itself

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
