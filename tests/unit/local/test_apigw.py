"""The twin builds payload-2.0 events and maps responses as API Gateway HTTP APIs do."""

from __future__ import annotations

import base64
import json

import pytest

from hilo.local.apigw import HttpApi, HttpRequest, build_event, is_text_content, map_response


def event_for(target: str, headers: list[tuple[str, str]], body: bytes = b"", method: str = "POST") -> dict:
    return build_event(HttpRequest(method, target, headers, body), f"{method} /x", {"id": "42"}, "api1", "123456789012")


def test_raw_path_query_and_headers_are_as_api_gateway_sends_them() -> None:
    event = event_for(
        "/webhooks/twilio/messages?tenant=acme&a=1&a=2&q=%C2%BFqu%C3%A9%3F",
        [("Host", "hilo.example"), ("X-Twilio-Signature", "abc"), ("Accept", "a"), ("Accept", "b")],
    )
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/webhooks/twilio/messages"
    assert event["rawQueryString"] == "tenant=acme&a=1&a=2&q=%C2%BFqu%C3%A9%3F"
    assert event["queryStringParameters"] == {"tenant": "acme", "a": "1,2", "q": "¿qué?"}
    assert event["headers"]["x-twilio-signature"] == "abc"
    assert event["headers"]["accept"] == "a,b"
    assert event["pathParameters"] == {"id": "42"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["apiId"] == "api1"
    assert event["requestContext"]["stage"] == "$default"


def test_cookies_leave_the_headers_for_their_own_list() -> None:
    event = event_for("/x", [("Cookie", "a=1; b=2"), ("Cookie", "c=3")], method="GET")
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_form_bodies_are_base64_encoded_and_json_bodies_are_not() -> None:
    form = event_for("/x", [("Content-Type", "application/x-www-form-urlencoded")], b"Body=Hola&From=%2B57300")
    assert form["isBase64Encoded"] is True
    assert base64.b64decode(form["body"]) == b"Body=Hola&From=%2B57300"
    data = event_for("/x", [("Content-Type", "application/json; charset=utf-8")], '{"t": "ñandú"}'.encode())
    assert data["isBase64Encoded"] is False
    assert data["body"] == '{"t": "ñandú"}'


def test_a_request_without_body_has_no_body_field() -> None:
    event = event_for("/x", [], method="GET")
    assert "body" not in event
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "text"),
    [("text/xml", True), ("application/json", True), ("application/ld+json", True), ("multipart/form-data; b=x", False),
     ("application/x-www-form-urlencoded", False), ("image/jpeg", False), ("", False)],
)  # fmt: skip
def test_text_content_types(content_type: str, text: bool) -> None:
    assert is_text_content(content_type) is text


def test_a_bare_result_is_a_200_json_response() -> None:
    response = map_response({"ok": True})
    assert (response.status, response.headers, json.loads(response.body)) == (
        200,
        [("content-type", "application/json")],
        {"ok": True},
    )


def test_a_full_result_keeps_status_headers_cookies_and_decodes_base64() -> None:
    response = map_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/xml"},
            "cookies": ["s=1; HttpOnly", "t=2"],
            "body": base64.b64encode(b"<Response/>").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert response.body == b"<Response/>"
    assert ("content-type", "text/xml") in response.headers
    assert [v for k, v in response.headers if k == "set-cookie"] == ["s=1; HttpOnly", "t=2"]


def test_a_malformed_status_is_a_gateway_500() -> None:
    assert map_response({"statusCode": "abc"}).status == 500


class RecordingPool:
    """Stands in for a function: answers 200 and remembers the events it got."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, event: dict) -> dict:
        self.events.append(event)
        return {"statusCode": 200, "body": "{}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 401),
        ([("Authorization", "Basic dXNlcjpwYXNz")], 401),
        ([("Authorization", "Bearer ")], 401),
        ([("Authorization", "Bearer dev-token")], 200),
    ],
)
def test_a_route_behind_a_jwt_authorizer_needs_a_bearer_token_before_the_function_runs(
    headers: list[tuple[str, str]], status: int
) -> None:
    # Given one route behind the authorizer and one public route
    private, public = RecordingPool(), RecordingPool()
    api = HttpApi({"GET /v1/customers": private, "POST /webhooks/telegram": public}, "api1", "123456789012",
                  bearer_routes={"GET /v1/customers"})  # type: ignore[dict-item]  # fmt: skip
    # When
    response = api.handle(HttpRequest("GET", "/v1/customers", headers, b""))
    # Then API Gateway's own 401 answers, and the function never runs without a token
    assert response.status == status
    assert len(private.events) == (1 if status == 200 else 0)
    if status == 401:
        assert json.loads(response.body) == {"message": "Unauthorized"}
    assert api.handle(HttpRequest("POST", "/webhooks/telegram", [], b"{}")).status == 200
