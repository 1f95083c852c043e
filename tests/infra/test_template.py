"""template.yaml is valid CloudFormation, translates with SAM, and keeps the stack's invariants."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

from hilo.local.template import load_template
from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
DESIGN_ROUTES = {
    "POST /webhooks/twilio/messages",
    "POST /webhooks/twilio/status",
    "POST /webhooks/twilio/voice",
    "POST /webhooks/twilio/voice/status",
    "GET /webhooks/whatsapp",
    "POST /webhooks/whatsapp",
    "GET /webhooks/messenger",
    "POST /webhooks/messenger",
    "GET /webhooks/instagram",
    "POST /webhooks/instagram",
    "POST /webhooks/telegram",
    "POST /webhooks/email/sendgrid",
    "POST /v1/chat/sessions",
    "POST /v1/chat/sessions/{id}/messages",
    "GET /v1/chat/sessions/{id}/messages",
    "POST /v1/events",
    "GET /health",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


# Regions Hilo documents: SES receiving (inbound e-mail) exists only in some regions, São Paulo among them.
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "sa-east-1"]


def test_cfn_lint_finds_nothing() -> None:
    matches = lint(TEMPLATE.read_text(), config=ManualArgs(regions=REGIONS))
    assert [str(match) for match in matches if match.rule.id[0] in "EW"] == []


def test_sam_translates_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the template with local code folders replaced by S3 locations, as `sam package` does
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    document, _ = decode_str(TEMPLATE.read_text())
    document = json.loads(json.dumps(document, default=str))
    for resource in document["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if isinstance(resource.get("Properties", {}).get(key), str):
                resource["Properties"][key] = "s3://bucket/code.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    # When SAM translates it
    output = transform(copy.deepcopy(document), {}, NoManagedPolicies())
    # Then the HTTP API carries every route plus $default
    api = next(r for r in output["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    paths = api["Properties"]["Body"]["paths"]
    translated = {
        f"{method.upper()} {path}" for path, methods in paths.items() for method in methods if path != "$default"
    }
    assert translated >= DESIGN_ROUTES
    assert "$default" in paths


def test_every_contract_route_is_declared(template: dict[str, Any]) -> None:
    declared = set()
    for function in _resources(template, "AWS::Serverless::Function").values():
        for event in (function["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                declared.add(f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}")
    assert declared >= DESIGN_ROUTES
    for prefix in ("/v1/customers", "/v1/conversations", "/v1/workflows", "/v1/analytics"):
        assert f"ANY {prefix}" in declared
        assert f"ANY {prefix}/{{proxy+}}" in declared
    assert "ANY $default" in declared


def test_every_queue_has_a_dlq_and_every_dlq_an_alarm(template: dict[str, Any]) -> None:
    queues = _resources(template, "AWS::SQS::Queue")
    dlqs = {name for name in queues if name.endswith("Dlq")}
    for name, queue in queues.items():
        if name in dlqs:
            continue
        redrive = queue["Properties"]["RedrivePolicy"]
        # Its own <Name>Dlq, or one a family of queues shares (every provider's send queue → SendDlq).
        target, attribute = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
        assert attribute == "Arn"
        assert target in (f"{name.removesuffix('Queue')}Dlq", "SendDlq" if name.startswith("Send") else None)
        assert 1 < int(redrive["maxReceiveCount"]) <= 10
        dlq = queues[target]["Properties"]
        assert bool(dlq.get("FifoQueue")) == bool(queue["Properties"].get("FifoQueue"))
        assert int(dlq["MessageRetentionPeriod"]) >= int(queue["Properties"]["MessageRetentionPeriod"])
    alarmed = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for alarm in _resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert alarmed == dlqs


def test_queue_visibility_is_at_least_six_times_its_consumers_timeout(template: dict[str, Any]) -> None:
    default_timeout = template["Globals"]["Function"]["Timeout"]
    for function in _resources(template, "AWS::Serverless::Function").values():
        timeout = function["Properties"].get("Timeout", default_timeout)
        for event in (function["Properties"].get("Events") or {}).values():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                visibility = template["Resources"][queue]["Properties"]["VisibilityTimeout"]
                assert visibility >= 6 * timeout, queue
                assert "ReportBatchItemFailures" in event["Properties"]["FunctionResponseTypes"]


def test_table_and_storage_are_protected(template: dict[str, Any]) -> None:
    table = template["Resources"]["ProfileTable"]["Properties"]
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    for queue in _resources(template, "AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_functions_run_on_a_current_arm64_python_runtime_and_exist(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Architectures"] == ["arm64"]
    assert re.fullmatch(r"python3\.(1[2-9])", function_globals["Runtime"])
    for name, function in _resources(template, "AWS::Serverless::Function").items():
        code = ROOT / function["Properties"]["CodeUri"]
        assert (code / "handler.py").is_file(), name
        assert not (code / "requirements.txt").exists(), f"{name}: dependencies come from the layer"


def test_the_dependencies_layer_is_exported_from_the_lock() -> None:
    # The layer's requirements must be exactly what uv.lock resolves for the runtime dependencies.
    exported = subprocess.run(
        [str(Path(sys.executable).parent / "uv"), "export", "--frozen", "--no-dev", "--no-emit-project",
         "--no-hashes", "--format", "requirements-txt", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def pins(text: str) -> set[str]:
        return {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}

    committed = (ROOT / "infra" / "layers" / "dependencies" / "requirements.txt").read_text()
    assert pins(committed) == pins(exported), "run `make lock`"
    assert not any(pin.startswith(("boto3", "botocore", "moto")) for pin in pins(committed))


def test_the_shared_layer_build_ships_the_package_with_its_bytecode(tmp_path: Path) -> None:
    # Given the makefile SAM runs for SharedLayer (BuildMethod: makefile), run from a copy as SAM does
    source = tmp_path / "source"
    subprocess.run(["cp", "-R", str(ROOT / "shared"), str(source)], check=True)
    artifacts = tmp_path / "artifacts"
    # When
    subprocess.run(["make", "-s", "-C", str(source), "build-SharedLayer", f"ARTIFACTS_DIR={artifacts}"], check=True)
    # Then the package lands at /opt/python/shared, without the makefile, and already compiled (Lambda's /opt is
    # read-only, so nothing could be compiled and cached there at cold start)
    package = artifacts / "python" / "shared"
    assert (package / "http.py").is_file()
    assert (package / "providers" / "meta.py").is_file()
    assert not (package / "Makefile").exists()
    tag = sys.implementation.cache_tag
    assert (package / "__pycache__" / f"http.{tag}.pyc").is_file()
    assert (package / "providers" / "__pycache__" / f"meta.{tag}.pyc").is_file()
