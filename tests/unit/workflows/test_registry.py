"""The workflow registry over its DynamoDB store (moto): the shipped files merged with versions loaded through the
API, versions immutable and kept for running enrolments, enabled overrides that reach the engine within the cache's
TTL, and one Query per TTL however many events ask."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.adapters.workflow_store import WorkflowStore
from shared.errors import PayloadTooLarge, RetryableError
from shared.outbound.catalog import shipped_catalog
from shared.workflows.catalog import UnknownWorkflow, WorkflowCatalog, shipped_workflows
from shared.workflows.language import Workflow, WorkflowInvalid, load_workflow
from shared.workflows.registry import (
    API,
    MAX_DOCUMENT_BYTES,
    SHIPPED,
    StoredWorkflowInvalid,
    VersionExists,
    VersionNotNewer,
    WorkflowRegistry,
    WorkflowSource,
    shipped_document,
)
from tests.unit.ingest.support import Faults, aws_client
from tests.unit.workflows.conftest import Table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
STORY_3 = "documento_descargado"
SHIPPED_ENABLED = ("confirmacion_cita", "documento_descargado", "producto_disponible")


@dataclass
class Clock:
    """The registry cache's monotonic clock, moved by hand."""

    seconds: float = 1_000.0

    def __call__(self) -> float:
        return self.seconds


def document(workflow_id: str = "bienvenida", version: int = 1, wait: str = "1d", **fields: Any) -> dict[str, Any]:
    """A small workflow as the API receives it: a lead converts, a day later they get a message."""
    return {
        "id": workflow_id,
        "version": version,
        "name": "Bienvenida",
        "trigger": {"type": "event", "event": "lead.converted"},
        "steps": [
            {"id": "esperar", "type": "wait", "duration": wait},
            {"id": "aviso", "type": "send", "template": "documento_descargado"},
        ],
        **fields,
    }


def story_3(version: int, wait: str = "3d") -> dict[str, Any]:
    """The shipped documento_descargado at another version, its reminder after ``wait``."""
    shipped = shipped_document(shipped_workflows().get(STORY_3))
    steps = [dict(step, duration=wait) if step.get("type") == "wait" and "duration" in step else step
             for step in shipped["steps"]]  # fmt: skip
    return {**shipped, "version": version, "steps": steps}


def catalog(*documents: dict[str, Any]) -> WorkflowCatalog:
    """The shipped files of a deployment: this repo's, with ``documents`` in place of the files of their ids."""
    workflows = {workflow_id: shipped_workflows().get(workflow_id) for workflow_id in shipped_workflows().ids()}
    for data in documents:
        workflows[data["id"]] = load_workflow(data, templates=shipped_catalog())
    return WorkflowCatalog(workflows)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(table: Table) -> WorkflowStore:
    return WorkflowStore(table.name, table.dynamodb)


def registry(store: WorkflowStore, clock: Clock | None = None, shipped: WorkflowCatalog | None = None,
             at: datetime = T0) -> WorkflowRegistry:  # fmt: skip
    return WorkflowRegistry(store, shipped or shipped_workflows(), templates=shipped_catalog(),
                            monotonic=clock or Clock(), clock=lambda: at)  # fmt: skip


def ids(workflows: tuple[Workflow, ...]) -> tuple[str, ...]:
    return tuple(workflow.id for workflow in workflows)


# ------------------------------------------------------------------------------------------------ what runs


def test_with_nothing_stored_the_shipped_enabled_files_run(store: WorkflowStore) -> None:
    source: WorkflowSource = registry(store)
    assert ids(source.enabled()) == SHIPPED_ENABLED  # satisfaccion_post_resolucion ships disabled
    assert source.enabled()[1] is shipped_workflows().get(STORY_3)
    assert source.version(STORY_3, 1) is shipped_workflows().get(STORY_3)
    summaries = {summary.workflow.id: summary.body() for summary in registry(store).workflows()}
    assert set(summaries) == set(shipped_workflows().ids())
    assert summaries[STORY_3]["source"] == SHIPPED
    assert summaries[STORY_3]["trigger"] == {"type": "event", "event": "document.downloaded"}
    assert summaries["satisfaccion_post_resolucion"]["enabled"] is False


def test_a_loaded_workflow_runs_with_the_shipped_ones_and_a_newer_version_replaces_it(store: WorkflowStore) -> None:
    api = registry(store)
    # When a new id is loaded, then its version 2
    first = api.put("bienvenida", document(), by="ana")
    second = api.put("bienvenida", document(version=2, wait="2d"), by="ana")
    # Then both are created, and a fresh process runs version 2 only
    assert (first.created, second.created) == (True, True)
    assert second.body()["loaded_by"] == "ana"
    assert second.body()["document"] == document(version=2, wait="2d")  # as sent
    engine = registry(store)
    assert ids(engine.enabled()) == ("bienvenida", *SHIPPED_ENABLED)
    assert engine.enabled()[0].version == 2
    # and version 1 stays readable for the enrolments that began on it
    assert engine.version("bienvenida", 1).fingerprint == first.version.workflow.fingerprint
    assert engine.version("bienvenida", 2).step("esperar").duration.days == 2  # type: ignore[union-attr]


def test_versions_are_immutable_and_only_go_up(store: WorkflowStore) -> None:
    api = registry(store)
    api.put("bienvenida", document(version=2), by="ana")
    # The same document again (another key order, same meaning) is a no-op
    again = api.put("bienvenida", dict(reversed(list(document(version=2).items()))), by="luis")
    assert again.created is False
    assert again.version.loaded_by == "ana"  # what was stored, untouched
    # Another document under the stored version is refused
    with pytest.raises(VersionExists, match="immutable: bump version"):
        api.put("bienvenida", document(version=2, wait="5d"), by="luis")
    # and so is a version below the newest
    with pytest.raises(VersionNotNewer, match="is at version 2: load version 3 or higher"):
        api.put("bienvenida", document(version=1), by="luis")
    assert [stored.version for stored in store.versions("bienvenida")] == [2]
    assert store.stored_version("bienvenida", 2).fingerprint == again.version.workflow.fingerprint  # type: ignore[union-attr]


def test_enabled_is_not_part_of_the_fingerprint_so_it_is_no_new_version(store: WorkflowStore) -> None:
    api = registry(store)
    api.put("bienvenida", document(), by="ana")
    assert api.put("bienvenida", document(enabled=False), by="ana").created is False


def test_a_shipped_id_takes_only_versions_above_its_file(store: WorkflowStore) -> None:
    api = registry(store)
    with pytest.raises(VersionNotNewer, match=r"ships at version 1.*load version 2 or higher"):
        api.put(STORY_3, story_3(version=1, wait="5d"), by="ana")
    with pytest.raises(VersionNotNewer):
        api.put(STORY_3, shipped_document(shipped_workflows().get(STORY_3)), by="ana")  # the file itself, too
    assert store.versions(STORY_3) == ()
    # Version 2 is loaded, and runs instead of the file
    assert api.put(STORY_3, story_3(version=2, wait="5d"), by="ana").created
    summary = next(s for s in registry(store).workflows() if s.workflow.id == STORY_3)
    assert (summary.workflow.version, summary.source, summary.warnings) == (2, API, ())
    assert registry(store).version(STORY_3, 1) is shipped_workflows().get(STORY_3)


def test_the_path_id_must_be_the_documents(store: WorkflowStore) -> None:
    with pytest.raises(WorkflowInvalid) as raised:
        registry(store).put("otra", document(), by="ana")
    assert raised.value.details == [
        {"workflow": "bienvenida", "step": None, "field": "id", "message": "must be 'otra', the id in the path"}
    ]


def test_validation_names_the_step_and_field_and_writes_nothing(store: WorkflowStore, table: Table) -> None:
    broken = document(wait="3 days")
    with pytest.raises(WorkflowInvalid) as raised:
        registry(store).validate(broken)
    assert raised.value.details[0]["step"] == "esperar"
    assert raised.value.details[0]["field"] == "wait.duration"
    # Templates are checked too, as for the shipped files
    unknown = document()
    unknown["steps"][1]["template"] = "no_existe"
    with pytest.raises(WorkflowInvalid, match=r"step 'aviso': field send\.template: there is no message template"):
        registry(store).put("bienvenida", unknown, by="ana")
    with pytest.raises(WorkflowInvalid, match="JSON object"):
        registry(store).validate(["not", "a", "workflow"])
    assert table.items("WORKFLOW") == table.items("WORKFLOW_VERSION") == []


def test_a_document_too_large_to_store_is_refused(store: WorkflowStore) -> None:
    large = document()
    large["steps"][1]["vars"] = {"relleno": "y" * MAX_DOCUMENT_BYTES}
    with pytest.raises(PayloadTooLarge):
        registry(store).put("bienvenida", large, by="ana")


# ---------------------------------------------------------------------------------- enabling and the cache


def test_disabling_reaches_the_engine_within_the_ttl_with_one_query_per_ttl(store: WorkflowStore, table: Table,
                                                                           clock: Clock) -> None:  # fmt: skip
    # Given an engine process whose requests are counted, and the API in another process
    engine_client = aws_client("dynamodb")
    counted = Faults().attach(engine_client)
    engine = registry(WorkflowStore(table.name, engine_client), clock)
    api = registry(store)
    assert STORY_3 in ids(engine.enabled())
    # When the API disables the shipped story 3
    summary = api.set_enabled(STORY_3, False, by="ana")
    assert summary.body()["enabled"] is False
    assert (summary.body()["enabled_by"], summary.body()["enabled_at"]) == ("ana", "2026-03-02T15:00:00Z")
    # Then the engine keeps it for up to the TTL, asking the table nothing per event
    for _ in range(100):
        clock.seconds += 0.29
        assert STORY_3 in ids(engine.enabled())
    assert counted.count("Query") == 1
    # and drops it once the TTL has passed
    clock.seconds += 2
    assert STORY_3 not in ids(engine.enabled())
    assert counted.count("Query") == 2
    assert counted.count() == 2  # nothing else was read
    # When it is enabled again, it is back after the TTL
    api.set_enabled(STORY_3, True, by="luis")
    clock.seconds += 30
    assert STORY_3 in ids(engine.enabled())


def test_the_override_wins_over_every_version(store: WorkflowStore) -> None:
    api = registry(store)
    api.set_enabled("satisfaccion_post_resolucion", True, by="ana")  # ships disabled
    assert "satisfaccion_post_resolucion" in ids(api.enabled())
    api.put("bienvenida", document(), by="ana")
    api.set_enabled("bienvenida", False, by="ana")
    api.put("bienvenida", document(version=2, enabled=True), by="ana")  # a new version does not switch it on
    assert "bienvenida" not in ids(api.enabled())
    assert next(s for s in api.workflows() if s.workflow.id == "bienvenida").workflow.version == 2


def test_a_failed_refresh_serves_the_previous_answer(table: Table, clock: Clock) -> None:
    client = aws_client("dynamodb")
    faults = Faults(fail_on={2}).attach(client)
    engine = registry(WorkflowStore(table.name, client), clock)
    before = engine.enabled()
    clock.seconds += 31
    assert engine.enabled() == before
    assert faults.count("Query") == 2
    # but with nothing to serve, the error is the caller's (the event is retried)
    cold = registry(WorkflowStore(table.name, client), clock)
    faults.fail_on = {3}
    with pytest.raises(RetryableError):
        cold.enabled()


def test_unknown_ids_and_versions(store: WorkflowStore) -> None:
    api = registry(store)
    with pytest.raises(UnknownWorkflow, match="has no version 2"):
        api.version(STORY_3, 2)
    with pytest.raises(UnknownWorkflow, match="has no version 1"):
        api.version("nadie", 1)
    with pytest.raises(UnknownWorkflow, match="No workflow 'nadie'"):
        api.set_enabled("nadie", False, by="ana")
    with pytest.raises(UnknownWorkflow):
        api.detail("nadie")
    assert api.exists(STORY_3)
    assert not api.exists("nadie")


# ------------------------------------------------------------------------------ shipped versions over time


def test_a_shipped_version_used_once_stays_readable_after_the_file_moves_on(store: WorkflowStore, table: Table) -> None:
    # Given a deployment whose file is at version 1, enrolling a customer on it
    old = registry(store, at=T0)
    v1 = old.enabled()[1]
    old.remember(v1)
    old.remember(v1)  # once per process: the enrol path may call it for every enrolment
    # When the next deployment ships version 2
    new = registry(store, shipped=catalog(story_3(version=2, wait="5d")))
    # Then new enrolments get version 2, and the running one still finds version 1
    assert next(w for w in new.enabled() if w.id == STORY_3).version == 2
    assert new.version(STORY_3, 1).fingerprint == v1.fingerprint
    assert new.version(STORY_3, 2).fingerprint != v1.fingerprint
    copies = table.items("WORKFLOW_VERSION")
    assert [(item["sk"], item["source"], item.get("loaded_by")) for item in copies] == [
        (f"WFV#{STORY_3}#0000000001", SHIPPED, None)
    ]
    assert json.loads(copies[0]["document"]) == shipped_document(v1)
    # and the API lists both
    versions = new.detail(STORY_3).body()["versions"]
    assert [(v["version"], v["source"], v["loaded_at"]) for v in versions] == [
        (1, SHIPPED, "2026-03-02T15:00:00Z"),
        (2, SHIPPED, None),
    ]


def test_without_remember_a_moved_file_loses_its_old_version(store: WorkflowStore) -> None:
    new = registry(store, shipped=catalog(story_3(version=2)))
    with pytest.raises(UnknownWorkflow):
        new.version(STORY_3, 1)


def test_a_file_changed_without_a_new_version_does_not_change_running_enrolments(
    store: WorkflowStore, caplog: pytest.LogCaptureFixture
) -> None:
    registry(store).remember(shipped_workflows().get(STORY_3))
    edited = registry(store, shipped=catalog(story_3(version=1, wait="5d")))
    edited.remember(next(w for w in edited.enabled() if w.id == STORY_3))
    assert edited.version(STORY_3, 1).fingerprint == shipped_workflows().get(STORY_3).fingerprint
    (version,) = edited.detail(STORY_3).body()["versions"]
    assert "changed without a new version" in version["note"]


def test_the_api_keeps_a_version_the_file_reaches_later(store: WorkflowStore) -> None:
    registry(store).put(STORY_3, story_3(version=2, wait="5d"), by="ana")
    later = registry(store, shipped=catalog(story_3(version=2, wait="7d")))
    (summary,) = (s for s in later.workflows() if s.workflow.id == STORY_3)
    assert summary.source == API
    assert summary.workflow.step("esperar_3_dias").duration.days == 5  # type: ignore[union-attr]
    assert "give the file version 3 or higher" in summary.warnings[0]
    assert later.version(STORY_3, 2).fingerprint == summary.workflow.fingerprint


def test_every_shipped_document_reads_back_as_the_same_workflow() -> None:
    for workflow_id in shipped_workflows().ids():
        workflow = shipped_workflows().get(workflow_id)
        data = json.loads(json.dumps(shipped_document(workflow)))
        assert load_workflow(data, templates=shipped_catalog()).fingerprint == workflow.fingerprint


def test_a_stored_document_that_no_longer_loads_is_skipped_not_fatal(store: WorkflowStore, table: Table) -> None:
    registry(store).put("bienvenida", document(), by="ana")
    head = {"pk": {"S": "WORKFLOWS"}, "sk": {"S": "WF#bienvenida"}}
    broken = {":d": {"S": json.dumps(document(wait="3 days"))}}
    table.dynamodb.update_item(TableName=table.name, Key=head, UpdateExpression="SET newest_document = :d",
                               ExpressionAttributeValues=broken)  # fmt: skip
    fresh = registry(store)
    assert ids(fresh.enabled()) == SHIPPED_ENABLED
    with pytest.raises(StoredWorkflowInvalid, match="no longer loads"):
        fresh.detail("bienvenida")
