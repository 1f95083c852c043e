"""The real template.yaml, running on the local twin, answered over real HTTP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from hilo.local.apigw import HttpRequest, build_event
from hilo.local.stack import ACCOUNT_ID, LocalStack
from hilo.local.template import load_template
from tests.conftest import ROOT
from tests.helpers import http

pytestmark = pytest.mark.stack


def test_health_answers_over_http(hilo_stack: LocalStack) -> None:
    # When
    response = http("GET", f"{hilo_stack.api_url}/health")
    # Then
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "ok"


def test_unknown_route_is_a_json_404(hilo_stack: LocalStack) -> None:
    response = http("GET", f"{hilo_stack.api_url}/no/such/thing?x=1")
    assert response.status == 404
    assert response.json() == {"error": "not_found", "message": "No route for GET /no/such/thing."}


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(hilo_stack: LocalStack) -> None:
    response = http("DELETE", f"{hilo_stack.api_url}/webhooks/whatsapp")
    assert response.status == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"] == "method_not_allowed"
    assert response.json()["details"] == [{"allowed_methods": ["GET", "POST"]}]


def test_a_contract_route_not_built_yet_is_a_json_501_not_a_fake_success(hilo_stack: LocalStack) -> None:
    response = http("GET", f"{hilo_stack.api_url}/v1/analytics/channels", None, {"authorization": "Bearer t"})
    assert response.status == 501
    assert response.json()["error"] == "not_implemented"
    assert "/v1/analytics/channels" in response.json()["message"]


def test_a_body_over_the_api_limit_is_a_json_413(hilo_stack: LocalStack) -> None:
    response = http(
        "POST", f"{hilo_stack.api_url}/v1/events", b"x" * (10 * 1024 * 1024 + 1), {"content-type": "application/json"}
    )
    assert response.status == 413
    assert response.json() == {"message": "Request Entity Too Large"}


def test_a_function_error_never_shows_a_stack_trace(hilo_stack: LocalStack) -> None:
    # Given a request that makes the fallback function fail inside (its API id is unknown to the route catalog)
    event = build_event(HttpRequest("GET", "/x", [], b""), "$default", {}, "missing-api", ACCOUNT_ID)
    # When
    result = hilo_stack.invoke("ApiFallbackFunction", event)
    # Then it answers a JSON error that says nothing of its insides
    assert result["statusCode"] == 503
    body = json.loads(result["body"])
    assert body["error"] == "temporarily_unavailable"
    assert "Traceback" not in result["body"]


def test_every_queue_of_the_template_exists_with_its_redrive_policy(hilo_stack: LocalStack) -> None:
    # Given the queues template.yaml declares
    template = load_template(ROOT / "template.yaml")
    declared = {name for name, res in template["Resources"].items() if res["Type"] == "AWS::SQS::Queue"}
    sqs = hilo_stack.client("sqs")
    # When listing them on the embedded AWS
    urls = set(sqs.list_queues(QueueNamePrefix="hilotest-")["QueueUrls"])
    # Then each exists, and each non-DLQ queue redrives to its DLQ
    assert urls == {hilo_stack.physical_id(name) for name in declared}
    for name in declared - {n for n in declared if n.endswith("Dlq")}:
        attributes = sqs.get_queue_attributes(QueueUrl=hilo_stack.physical_id(name), AttributeNames=["All"])[
            "Attributes"
        ]
        redrive = json.loads(attributes["RedrivePolicy"])
        dlq = "SendDlq" if name.startswith("Send") else f"{name.removesuffix('Queue')}Dlq"  # senders share one
        assert redrive["deadLetterTargetArn"] == hilo_stack.attribute(dlq, "Arn")


def test_the_profile_table_has_its_indexes_and_ttl(hilo_stack: LocalStack) -> None:
    dynamodb = hilo_stack.client("dynamodb")
    table = dynamodb.describe_table(TableName=hilo_stack.physical_id("ProfileTable"))["Table"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {"gsi1", "gsi2"}
    ttl = dynamodb.describe_time_to_live(TableName=hilo_stack.physical_id("ProfileTable"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_local_configuration_lands_in_the_secret_functions_read(hilo_stack: LocalStack) -> None:
    secret = hilo_stack.client("secretsmanager").get_secret_value(SecretId=hilo_stack.physical_id("ConfigSecret"))
    values = json.loads(secret["SecretString"])
    assert values["HILO_TWILIO_AUTH_TOKEN"] == "twilio-test-token"
    assert values["HILO_DEFAULT_REGION"] == "MX"  # the environment overrides the template's default
    assert values["HILO_PUBLIC_URL"] == hilo_stack.api_url


def test_the_local_clock_moves_forward_for_every_function(hilo_stack: LocalStack) -> None:
    # Given the time a function sees now
    before = datetime.fromisoformat(http("GET", f"{hilo_stack.api_url}/health").json()["time"])
    # When the clock is advanced three days
    moved = http("POST", f"{hilo_stack.api_url}/_dev/clock", json.dumps({"advance_seconds": 3 * 86400}))
    # Then the clock says so and functions see the new time
    assert moved.status == 200
    after = datetime.fromisoformat(http("GET", f"{hilo_stack.api_url}/health").json()["time"])
    assert after - before >= timedelta(days=3)
    assert datetime.fromisoformat(http("GET", f"{hilo_stack.api_url}/_dev/clock").json()["now"]) >= after


@pytest.mark.parametrize("body", [b"not json", b'{"advance_seconds": -5}', b'{"advance_seconds": "soon"}', b"{}"])
def test_the_clock_rejects_bad_input_with_a_json_400(hilo_stack: LocalStack, body: bytes) -> None:
    response = http("POST", f"{hilo_stack.api_url}/_dev/clock", body)
    assert response.status == 400
    assert response.json()["error"] == "invalid_input"


def test_the_agent_api_is_behind_the_jwt_authorizer(hilo_stack: LocalStack) -> None:
    # As in AWS, a request without a bearer token never reaches a function
    response = http("GET", f"{hilo_stack.api_url}/v1/customers?phone=%2B573001234567")
    assert response.status == 401
    assert response.json() == {"message": "Unauthorized"}
