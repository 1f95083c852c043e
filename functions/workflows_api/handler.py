"""/v1/workflows (HTTP API, behind the AgentJwt authorizer): list the workflows, read one and its versions, validate a
document, load a new version (201 created, 200 when this very document is stored already, 409 on a version clash),
enable or disable one for new enrolments, and page through who is enrolled in it now (shared/workflows/registry.py).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from pydantic import RootModel

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.enrolment_store import EnrolmentStore
from shared.adapters.workflow_store import WorkflowStore
from shared.auth import Principal, authenticate
from shared.errors import InvalidInput, MethodNotAllowed, NotFound
from shared.http import create_app, parse_json_body
from shared.observability import logger, metrics
from shared.workflows.catalog import UnknownWorkflow
from shared.workflows.engine import Enrolment
from shared.workflows.registry import MAX_DOCUMENT_BYTES, WorkflowRegistry

app = create_app()


@dataclass(frozen=True)
class Ports:
    settings: SettingsLoader
    registry: WorkflowRegistry
    enrolments: EnrolmentStore


@functools.cache
def ports() -> Ports:
    from shared.outbound.catalog import shipped_catalog
    from shared.workflows.catalog import shipped_workflows

    table = os.environ["PROFILE_TABLE_NAME"]
    registry = WorkflowRegistry(WorkflowStore(table), shipped_workflows(), templates=shipped_catalog())
    return Ports(SettingsLoader(os.environ), registry, EnrolmentStore(table))


def caller() -> tuple[Principal, Ports]:
    """Who calls (before anything is read), with the ports this request runs on."""
    wired: Ports = app.context["ports"]
    return authenticate(app.current_event.raw_event, wired.settings.get()), wired


def registry() -> WorkflowRegistry:
    return caller()[1].registry


@app.get("/v1/workflows")
def list_workflows() -> dict[str, Any]:
    return {"workflows": [summary.body() for summary in registry().workflows()]}


@app.post("/v1/workflows/validate")
def validate() -> dict[str, Any]:
    workflow = registry().validate(document())
    return {"valid": True, "id": workflow.id, "version": workflow.version, "fingerprint": workflow.fingerprint}


@app.get("/v1/workflows/<workflow_id>")
def read_workflow(workflow_id: str) -> dict[str, Any]:
    return registry().detail(workflow_id).body()


@app.put("/v1/workflows/<workflow_id>")
def load_version(workflow_id: str) -> Response[str]:
    who, wired = caller()
    loaded = wired.registry.put(workflow_id, document(), by=who.subject)
    metrics.add_metric(name="WorkflowVersionsLoaded" if loaded.created else "WorkflowVersionsRepeated", unit="Count",
                       value=1)  # fmt: skip
    return json_response(201 if loaded.created else 200, loaded.body())


@app.get("/v1/workflows/<workflow_id>/versions/<version>")
def read_version(workflow_id: str, version: str) -> dict[str, Any]:
    wired = caller()[1]
    return wired.registry.version_detail(workflow_id, whole_number("version", version, 1, None)).body()


@app.post("/v1/workflows/<workflow_id>/<action>")
def switch(workflow_id: str, action: str) -> dict[str, Any]:
    who, wired = caller()
    if action not in ("enable", "disable"):
        raise NotFound(f"No route for POST /v1/workflows/{{id}}/{action[:32]}.")
    return wired.registry.set_enabled(workflow_id, action == "enable", by=who.subject).body()


@app.get("/v1/workflows/<workflow_id>/enrolments")
def enrolments(workflow_id: str) -> dict[str, Any]:
    wired = caller()[1]
    query = app.current_event.query_string_parameters or {}
    limit = whole_number("limit", query.get("limit", "50"), 1, 100)
    if not wired.registry.exists(workflow_id):
        raise UnknownWorkflow(f"No workflow {workflow_id!r}.")
    page = wired.enrolments.enrolled_in(workflow_id, limit=limit, cursor=query.get("cursor") or None)
    return {"workflow_id": workflow_id, "enrolments": [enrolment_view(e) for e in page.enrolments],
            "cursor": page.cursor}  # fmt: skip


# Registered last: the resolver tries routes in the order they were declared, so these only catch other methods.
_ACTIONS = {"enable": ["POST"], "disable": ["POST"], "enrolments": ["GET"]}


@app.route("/v1/workflows", method=["POST", "PUT", "PATCH", "DELETE"])
def workflows_other() -> None:
    not_allowed(["GET"])


@app.route("/v1/workflows/<workflow_id>", method=["POST", "PATCH", "DELETE"])
def workflow_other(workflow_id: str) -> None:
    not_allowed(["GET", "PUT", "POST"] if workflow_id == "validate" else ["GET", "PUT"])


@app.route("/v1/workflows/<workflow_id>/<action>", method=["GET", "PUT", "PATCH", "DELETE"])
def action_other(workflow_id: str, action: str) -> None:
    if action not in _ACTIONS:
        http = app.current_event.request_context.http
        raise NotFound(f"No route for {http.method} /v1/workflows/{{id}}/{action[:32]}.")
    not_allowed(_ACTIONS[action])


@app.route("/v1/workflows/<workflow_id>/versions/<version>", method=["POST", "PUT", "PATCH", "DELETE"])
def version_other(workflow_id: str, version: str) -> None:
    not_allowed(["GET"])


def not_allowed(allowed: list[str]) -> None:
    method = app.current_event.request_context.http.method
    raise MethodNotAllowed(f"{method} is not allowed on {app.current_event.raw_path}; use {', '.join(allowed)}.",
                           allowed=allowed)  # fmt: skip


class _Json(RootModel[Any]):
    """Any JSON document: the workflow language's rules are the registry's (422), not the reader's."""


def document() -> Any:
    """The body as JSON: 413 past the document limit, 415 for another content type, 400 when it is not JSON."""
    return parse_json_body(app.current_event, _Json, max_bytes=MAX_DOCUMENT_BYTES).root


def whole_number(name: str, text: str, low: int, high: int | None) -> int:
    """A path or query number, 400 naming it when it is not one in range."""
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        limits = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{name} must be a whole number {limits}.")
    return int(text)


def enrolment_view(enrolment: Enrolment) -> dict[str, Any]:
    """Who is in the workflow and where: ids, version, step and wait, never the trigger's data or replies."""
    waiting = enrolment.wait
    return {
        **enrolment.model_dump(mode="json", include={"id", "customer_id", "workflow_version", "key", "status",
                                                      "current_step", "variant", "started_at", "updated_at"}),
        "waiting": {"step": waiting.step_id, "until": waiting.until.isoformat().replace("+00:00", "Z"),
                    "event": waiting.event} if waiting else None,
    }  # fmt: skip


def json_response(status: int, payload: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False))  # fmt: skip


def handle(event: dict[str, Any], context: Any, wired: Ports) -> dict[str, Any]:
    """Answer one request with the given ports (the function passes the real ones; tests pass theirs)."""
    app.context["ports"] = wired  # cleared by resolve, like append_context
    return app.resolve(event, context)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, ports())
