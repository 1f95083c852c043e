"""HTTP API plumbing shared by every API function: one error format, one status mapping, one body reader.

Every error a caller sees is JSON ``{"error": <code>, "message": <human text>, "details": [...]}``; the status
comes from the class of the exception (``STATUS_BY_ERROR``), never from its text, and a stack trace never
leaves the function.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel, ValidationError

from shared.errors import (
    Conflict,
    Forbidden,
    HiloError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    RetryableError,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from shared.observability import logger, metrics

# Most specific first: the first class in the exception's MRO found here decides the status.
STATUS_BY_ERROR: dict[type[HiloError], int] = {
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unprocessable: 422,
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    NotImplementedYet: 501,
    RetryableError: 503,
}

DEFAULT_MAX_JSON_BYTES = 256 * 1024

ModelT = TypeVar("ModelT", bound=BaseModel)


def status_for(error: HiloError) -> int:
    """Return the HTTP status for a Hilo error (500 for anything not mapped)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """Build the one JSON error shape every endpoint answers with."""
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        headers=headers,
    )


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic's errors into ``[{"field": "a.b", "problem": "..."}]`` without echoing the input back."""
    return [
        {"field": ".".join(str(part) for part in item["loc"]) or "(body)", "problem": item["msg"]}
        for item in error.errors(include_url=False, include_input=False)
    ]


def create_app() -> APIGatewayHttpResolver:
    """Create a resolver for HTTP API (payload 2.0) events with Hilo's error handling registered."""
    app = APIGatewayHttpResolver()

    @app.exception_handler(HiloError)
    def _hilo_error(error: HiloError) -> Response[str]:
        status = status_for(error)
        headers = None
        if isinstance(error, MethodNotAllowed):
            headers = {"Allow": ", ".join(error.allowed)}
        elif isinstance(error, Unauthorized) and error.challenge:
            headers = {"WWW-Authenticate": error.challenge}
        log = logger.exception if status >= 500 and status != 501 else logger.info
        log("request rejected", extra={"error_code": error.code, "status": status})
        return error_response(status, error.code, error.message, error.details, headers)

    @app.exception_handler(ValidationError)
    def _validation_error(error: ValidationError) -> Response[str]:
        logger.info("request rejected", extra={"error_code": "invalid_input", "status": 400})
        return error_response(400, "invalid_input", "The request body is not valid.", validation_details(error))

    @app.exception_handler(NotFoundError)
    def _route_not_found(_: NotFoundError) -> Response[str]:
        event = app.current_event
        return error_response(404, "not_found", f"No route for {event.request_context.http.method} {event.raw_path}.")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[str]:
        # Logged with its traceback for operators; the caller only learns that it was our fault.
        logger.exception("unhandled error", extra={"error_type": type(error).__name__})
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")

    return app


def raw_body(event: APIGatewayProxyEventV2, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> bytes:
    """Return the request body as the bytes the client sent, decoding API Gateway's base64 when it used it.

    Raises
    ------
    PayloadTooLarge
        The decoded body is larger than ``max_bytes``.
    InvalidInput
        The event says base64 but the body is not valid base64.
    """
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidInput("The request body is marked base64 but is not valid base64.") from error
    else:
        data = body.encode("utf-8")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The request body is {len(data)} bytes; this endpoint accepts at most {max_bytes}.")
    return data


def parse_json_body(
    event: APIGatewayProxyEventV2, model: type[ModelT], *, max_bytes: int = DEFAULT_MAX_JSON_BYTES
) -> ModelT:
    """Read a JSON request body into ``model``, with a precise 4xx error for every way it can be wrong."""
    content_type = (event.headers or {}).get("content-type", "")
    if (
        content_type
        and content_type.split(";")[0].strip().lower() not in {"application/json", "text/json"}
        and not (content_type.split(";")[0].strip().lower().endswith("+json"))
    ):
        raise UnsupportedMediaType(f"Expected Content-Type application/json, got {content_type.split(';')[0]!r}.")
    data = raw_body(event, max_bytes=max_bytes)
    if not data.strip():
        raise InvalidInput("The request body is empty; a JSON object is expected.")
    try:
        document = json.loads(data.decode("utf-8"))  # JSON is UTF-8 (RFC 8259); bytes would let json guess UTF-16
    except UnicodeDecodeError as error:
        raise InvalidInput("The request body is not valid UTF-8.") from error
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"The request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}."
        ) from error
    return model.model_validate(document)


def api_handler(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Wrap a resolver as the Lambda entry point: the request id as correlation id in every log line, and the
    request's metrics flushed (as CloudWatch EMF) when it returns, whatever it answered."""

    @metrics.log_metrics
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return lambda_handler
