"""Every HTTP error is a JSON body with the right status; bodies are read exactly as the client sent them."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from hilo.local.apigw import HttpRequest, build_event
from shared.errors import Conflict, HiloError, InvalidInput, NotImplementedYet, RetryableError, Unauthorized
from shared.http import api_handler, create_app, parse_json_body, raw_body, status_for
from shared.observability import metrics


class Contact(BaseModel):
    name: str
    email: str


app = create_app()


@app.post("/contacts")
def create_contact() -> dict[str, Any]:
    contact = parse_json_body(app.current_event, Contact, max_bytes=1024)
    return {"name": contact.name}


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@app.get("/conflict")
def conflict() -> None:
    raise Conflict("The profile changed since you read it.")


@app.get("/private")
def private() -> None:
    metrics.add_metric(name="PrivateHits", unit=MetricUnit.Count, value=1)
    raise Unauthorized("Missing Basic credentials.", challenge='Basic realm="hilo"')


handler = api_handler(app)


class Context:
    function_name = "test"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"


def respond(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> dict[str, Any]:
    headers = [("content-type", content_type)] if content_type else []
    event = build_event(HttpRequest(method, path, headers, body), f"{method} {path}", {}, "api", "123456789012")
    response: dict[str, Any] = handler(event, Context())
    return response


def call(
    method: str, path: str, body: bytes = b"", content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    response = respond(method, path, body, content_type)
    return response["statusCode"], json.loads(response["body"])


def test_valid_json_reaches_the_route() -> None:
    assert call("POST", "/contacts", json.dumps({"name": "Ana", "email": "ana@example.co"}).encode()) == (
        200,
        {"name": "Ana"},
    )


def test_a_form_body_arrives_base64_encoded_and_still_reads() -> None:
    # API Gateway base64-encodes non-text bodies; a JSON body sent as +json text stays text
    status, _ = call("POST", "/contacts", b'{"name": "Ana", "email": "a@b.co"}', "application/vnd.api+json")
    assert status == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "fragment"),
    [
        (b"{not json", "application/json", 400, "invalid_input", "not valid JSON"),
        (b"", "application/json", 400, "invalid_input", "empty"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_input", "UTF-8"),
        (b"name=Ana", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "application/json"),
        (b'{"name": "' + b"a" * 2000 + b'"}', "application/json", 413, "payload_too_large", "at most 1024"),
    ],
)
def test_bad_bodies_get_a_precise_json_error(
    body: bytes, content_type: str, status: int, code: str, fragment: str
) -> None:
    got_status, payload = call("POST", "/contacts", body, content_type)
    assert got_status == status
    assert payload["error"] == code
    assert fragment in payload["message"]


def test_schema_errors_name_the_field_without_echoing_the_input() -> None:
    status, payload = call("POST", "/contacts", json.dumps({"name": "Ana", "email": ["x"]}).encode())
    assert status == 400
    assert payload["details"] == [{"field": "email", "problem": "Input should be a valid string"}]


def test_an_unexpected_error_is_a_json_500_that_reveals_nothing() -> None:
    status, payload = call("GET", "/boom", content_type="")
    assert status == 500
    assert payload == {"error": "internal_error", "message": "Something went wrong on our side; it has been logged."}


def test_domain_errors_map_by_class_not_by_text() -> None:
    assert call("GET", "/conflict", content_type="") == (
        409,
        {"error": "conflict", "message": "The profile changed since you read it."},
    )
    assert status_for(Unauthorized("x")) == 401
    assert status_for(NotImplementedYet("x")) == 501
    assert status_for(RetryableError("x")) == 503
    assert status_for(InvalidInput("x")) == 400
    assert status_for(HiloError("x")) == 500


def test_a_401_with_a_challenge_names_its_scheme_and_metrics_are_flushed_anyway(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given nothing buffered by earlier tests
    metrics.clear_metrics()
    # When a route counts something and then refuses the caller
    response = respond("GET", "/private", content_type="")
    # Then the 401 says how to authenticate...
    assert response["statusCode"] == 401
    assert response["headers"]["WWW-Authenticate"] == 'Basic realm="hilo"'
    assert json.loads(response["body"])["error"] == "unauthorized"
    # ...and the count still reaches CloudWatch (an EMF line on stdout)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [document["PrivateHits"] for document in emf] == [[1.0]]


def test_an_unknown_route_inside_a_function_is_a_json_404() -> None:
    assert call("GET", "/elsewhere", content_type="")[0] == 404


def test_raw_body_rejects_broken_base64() -> None:
    event = APIGatewayProxyEventV2({"body": "%%%", "isBase64Encoded": True})
    with pytest.raises(InvalidInput, match="base64"):
        raw_body(event)


@settings(max_examples=300)
@given(body=st.binary(max_size=600), encoded=st.booleans())
def test_any_body_is_either_read_or_refused_with_a_hilo_or_validation_error(body: bytes, encoded: bool) -> None:
    event = APIGatewayProxyEventV2(
        {
            "headers": {"content-type": "application/json"},
            "body": base64.b64encode(body).decode() if encoded else body.decode("utf-8", "replace"),
            "isBase64Encoded": encoded,
        }
    )
    with contextlib.suppress(HiloError, ValidationError):
        parse_json_body(event, Contact, max_bytes=512)
