"""/v1/workflows through the function's handler, with API Gateway's payload 2.0 events and the JWT authorizer's
claims, on moto: list, read, validate, load versions, enable and disable, and who is enrolled now."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.workflows_api import handler
from hilo.local.apigw import HttpRequest, build_event
from shared.adapters.config_secret import SettingsLoader
from shared.adapters.enrolment_store import EnrolmentStore
from shared.adapters.workflow_store import WorkflowStore
from shared.models.common import new_id
from shared.models.events import DomainEvent
from shared.outbound.catalog import shipped_catalog
from shared.workflows.catalog import shipped_workflows
from shared.workflows.engine import Enrolled, enrol
from shared.workflows.registry import WorkflowRegistry, shipped_document
from tests.unit.workflows.conftest import Table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
STORY_3 = "documento_descargado"


class Context:
    function_name = "WorkflowsApiFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:WorkflowsApiFunction"
    aws_request_id = "req-1"


@dataclass
class Api:
    ports: handler.Ports

    def call(self, method: str, path: str, body: Any = None, *, subject: str | None = "ana",
             content_type: str = "application/json") -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        """One request as API Gateway hands it over after the AgentJwt authorizer verified ``subject``'s token."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = [("content-type", content_type), ("authorization", "Bearer eyJ.verified.by-api-gateway")]
        event = build_event(HttpRequest(method, path, headers, data), "ANY /v1/workflows/{proxy+}", {}, "api",
                            "123456789012")  # fmt: skip
        if subject is not None:
            event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": subject}, "scopes": None}}
        response = handler.handle(event, Context(), self.ports)
        return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}


@pytest.fixture
def api(table: Table) -> Api:
    registry = WorkflowRegistry(WorkflowStore(table.name, table.dynamodb), shipped_workflows(),
                                templates=shipped_catalog(), clock=lambda: T0)  # fmt: skip
    return Api(handler.Ports(SettingsLoader({}), registry, EnrolmentStore(table.name, table.dynamodb)))


def document(workflow_id: str = "bienvenida", version: int = 1, wait: str = "1d") -> dict[str, Any]:
    return {
        "id": workflow_id,
        "version": version,
        "name": "Bienvenida",
        "trigger": {"type": "event", "event": "lead.converted"},
        "steps": [
            {"id": "esperar", "type": "wait", "duration": wait},
            {"id": "aviso", "type": "send", "template": "documento_descargado"},
        ],
    }


def test_the_list_shows_the_shipped_workflows(api: Api) -> None:
    status, body, _ = api.call("GET", "/v1/workflows")
    assert status == 200
    listed = {item["id"]: item for item in body["workflows"]}
    assert set(listed) == set(shipped_workflows().ids())
    story = listed[STORY_3]
    assert story == {
        "id": STORY_3,
        "name": "Seguimiento de documento descargado",
        "description": shipped_workflows().get(STORY_3).description,
        "version": 1,
        "enabled": True,
        "enabled_by": None,
        "enabled_at": None,
        "source": "shipped",
        "trigger": {"type": "event", "event": "document.downloaded"},
        "fingerprint": shipped_workflows().get(STORY_3).fingerprint,
        "warnings": [],
    }
    assert listed["satisfaccion_post_resolucion"]["enabled"] is False


def test_a_caller_without_a_verified_token_is_refused(api: Api) -> None:
    status, body, headers = api.call("GET", "/v1/workflows", subject=None)
    assert (status, body["error"], headers["WWW-Authenticate"]) == (401, "unauthorized", 'Bearer realm="hilo"')


def test_validate_a_good_and_a_bad_document(api: Api, table: Table) -> None:
    status, body, _ = api.call("POST", "/v1/workflows/validate", document())
    assert status == 200
    assert body == {"valid": True, "id": "bienvenida", "version": 1, "fingerprint": body["fingerprint"]}
    assert len(body["fingerprint"]) == 64
    # A bad one: the error names the step and the field
    status, body, _ = api.call("POST", "/v1/workflows/validate", document(wait="3 days"))
    assert (status, body["error"]) == (422, "workflow_invalid")
    ((detail),) = body["details"]
    assert (detail["workflow"], detail["step"], detail["field"]) == ("bienvenida", "esperar", "wait.duration")
    assert detail["message"].startswith("'3 days' is not a duration")
    assert "step 'esperar': field wait.duration" in body["message"]
    status, body, _ = api.call("POST", "/v1/workflows/validate", [1, 2])
    assert (status, body["error"]) == (422, "workflow_invalid")
    assert api.call("POST", "/v1/workflows/validate", "{", content_type="text/plain")[0] == 415
    assert table.items("WORKFLOW_VERSION") == []


def test_put_a_new_workflow_then_the_same_then_other_content(api: Api) -> None:
    status, body, _ = api.call("PUT", "/v1/workflows/bienvenida", document())
    assert status == 201
    assert (body["created"], body["id"], body["version"], body["source"], body["loaded_by"]) == (
        True, "bienvenida", 1, "api", "ana")  # fmt: skip
    assert body["document"] == document()
    # The same again: 200, nothing new
    status, again, _ = api.call("PUT", "/v1/workflows/bienvenida", document(), subject="luis")
    assert (status, again["created"], again["loaded_by"], again["fingerprint"]) == (
        200, False, "ana", body["fingerprint"])  # fmt: skip
    # Other content under the same version: 409
    status, clash, _ = api.call("PUT", "/v1/workflows/bienvenida", document(wait="2d"))
    assert (status, clash["error"]) == (409, "workflow_version_exists")
    assert "bump version" in clash["message"]
    # A new version is fine, and the list shows it, loaded through the API
    assert api.call("PUT", "/v1/workflows/bienvenida", document(version=2, wait="2d"))[0] == 201
    listed = {item["id"]: item for item in api.call("GET", "/v1/workflows")[1]["workflows"]}
    assert (listed["bienvenida"]["version"], listed["bienvenida"]["source"]) == (2, "api")
    # and the workflow, with its versions, and each version
    status, detail, _ = api.call("GET", "/v1/workflows/bienvenida")
    assert status == 200
    assert detail["document"] == document(version=2, wait="2d")
    assert [(v["version"], v["source"], v["loaded_by"], v["loaded_at"]) for v in detail["versions"]] == [
        (1, "api", "ana", "2026-03-02T15:00:00Z"), (2, "api", "ana", "2026-03-02T15:00:00Z")]  # fmt: skip
    status, first, _ = api.call("GET", "/v1/workflows/bienvenida/versions/1")
    assert (status, first["version"], first["document"]) == (200, 1, document())


def test_put_checks_the_path_id_and_the_shipped_version(api: Api) -> None:
    status, body, _ = api.call("PUT", "/v1/workflows/otra", document())
    assert (status, body["details"][0]["field"], body["details"][0]["message"]) == (
        422, "id", "must be 'otra', the id in the path")  # fmt: skip
    shipped = shipped_document(shipped_workflows().get(STORY_3))
    status, body, _ = api.call("PUT", f"/v1/workflows/{STORY_3}", {**shipped, "name": "Otro nombre"})
    assert (status, body["error"]) == (409, "workflow_version_not_newer")
    assert "ships at version 1" in body["message"]
    assert api.call("PUT", f"/v1/workflows/{STORY_3}", {**shipped, "version": 2, "name": "Otro nombre"})[0] == 201
    status, body, _ = api.call("GET", f"/v1/workflows/{STORY_3}")
    assert (body["version"], body["source"], body["name"]) == (2, "api", "Otro nombre")
    assert [(v["version"], v["source"]) for v in body["versions"]] == [(1, "shipped"), (2, "api")]
    assert api.call("GET", f"/v1/workflows/{STORY_3}/versions/1")[1]["document"] == shipped


def test_disable_and_enable(api: Api) -> None:
    status, body, _ = api.call("POST", f"/v1/workflows/{STORY_3}/disable", subject="jefa")
    assert (status, body["enabled"], body["enabled_by"], body["enabled_at"]) == (
        200, False, "jefa", "2026-03-02T15:00:00Z")  # fmt: skip
    assert api.ports.registry.version(STORY_3, 1).id == STORY_3  # running enrolments keep their version
    assert STORY_3 not in [w.id for w in api.ports.registry.enabled()]
    status, body, _ = api.call("POST", f"/v1/workflows/{STORY_3}/enable")
    assert (status, body["enabled"], body["enabled_by"]) == (200, True, "ana")
    assert STORY_3 in [w.id for w in api.ports.registry.enabled()]
    status, body, _ = api.call("POST", "/v1/workflows/nadie/enable")
    assert (status, body["error"]) == (404, "unknown_workflow")


def test_unknown_workflows_and_versions_are_404(api: Api) -> None:
    status, body, _ = api.call("GET", "/v1/workflows/nadie")
    assert (status, body["error"]) == (404, "unknown_workflow")
    assert STORY_3 in body["message"]  # it names the known ones
    status, body, _ = api.call("GET", f"/v1/workflows/{STORY_3}/versions/7")
    assert (status, body["message"]) == (404, f"Workflow {STORY_3!r} has no version 7.")
    assert api.call("GET", f"/v1/workflows/{STORY_3}/versions/uno")[0] == 400
    assert api.call("GET", "/v1/workflows/nadie/enrolments")[0] == 404
    assert api.call("POST", f"/v1/workflows/{STORY_3}/archive")[0] == 404


def test_other_methods_are_405_with_what_is_allowed(api: Api) -> None:
    cases = {
        ("DELETE", "/v1/workflows"): ["GET"],
        ("DELETE", f"/v1/workflows/{STORY_3}"): ["GET", "PUT"],
        ("GET", f"/v1/workflows/{STORY_3}/enable"): ["POST"],
        ("PUT", f"/v1/workflows/{STORY_3}/enrolments"): ["GET"],
        ("DELETE", f"/v1/workflows/{STORY_3}/versions/1"): ["GET"],
    }
    for (method, path), allowed in cases.items():
        status, body, headers = api.call(method, path)
        assert (status, body["details"], headers["Allow"]) == (
            405, [{"allowed_methods": allowed}], ", ".join(allowed)), (method, path)  # fmt: skip


def test_enrolments_page_through_who_is_in_it_now(api: Api, table: Table) -> None:
    store = EnrolmentStore(table.name, table.dynamodb)
    workflow = shipped_workflows().get(STORY_3)
    for seed in ("ana", "luis", "eva"):
        customer_id = new_id("cus", at=T0, seed=f"api:{seed}")
        event = DomainEvent.new("document.downloaded", source="web", correlation_id="corr-1", customer_id=customer_id,
                                occurred_at=T0, data={"document_title": "Guía"}, id_seed=f"api:{seed}")  # fmt: skip
        outcome = enrol(workflow, event, None, (), T0)
        assert isinstance(outcome, Enrolled)
        assert store.create(outcome.enrolment)
    status, first, _ = api.call("GET", f"/v1/workflows/{STORY_3}/enrolments?limit=2")
    assert status == 200
    assert len(first["enrolments"]) == 2
    assert first["cursor"]
    entry = first["enrolments"][0]
    assert set(entry) == {"id", "customer_id", "workflow_version", "key", "status", "current_step", "variant",
                          "started_at", "updated_at", "waiting"}  # fmt: skip
    assert (entry["workflow_version"], entry["status"]) == (1, "active")
    status, second, _ = api.call("GET", f"/v1/workflows/{STORY_3}/enrolments?limit=2&cursor={first['cursor']}")
    assert (status, len(second["enrolments"]), second["cursor"]) == (200, 1, None)
    ids = {e["id"] for e in first["enrolments"] + second["enrolments"]}
    assert len(ids) == 3
    # A cursor that is not one of ours, or a limit out of range, is the caller's mistake
    status, body, _ = api.call("GET", f"/v1/workflows/{STORY_3}/enrolments?cursor=not-a-cursor")
    assert (status, body["error"]) == (400, "invalid_input")
    assert api.call("GET", f"/v1/workflows/{STORY_3}/enrolments?limit=500")[0] == 400
    assert api.call("GET", "/v1/workflows/producto_disponible/enrolments")[1]["enrolments"] == []
