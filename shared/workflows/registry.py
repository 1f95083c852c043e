"""Which workflows a deployment runs: the shipped files merged with what was loaded through the API and stored.

A workflow id has versions, and each version is one document for ever. The rules, and why:

- **The shipped file is the repo's truth for its versions.** A document loaded through the API (``PUT``) for a
  shipped id must have a higher version than the file; otherwise the same id and version could mean two journeys.
- **Versions are immutable.** The first document stored for an id and version is that version. A ``PUT`` of the same
  id, version and fingerprint again is a no-op (200, nothing written); a different document under a stored version is
  refused (``VersionExists``, 409: bump ``version``). Versions only go up: a ``PUT`` below the newest stored one is
  refused too (``VersionNotNewer``, 409).
- **The newest version runs.** ``enabled()`` offers triggers the newest version of every enabled workflow: the stored
  one when it is at least the file's version, else the file. (A file that reaches a version the API used already
  loses the tie, and its summary carries a warning: give it a higher version.)
- **Every version ever used stays readable.** A running enrolment keeps the version it began with: the step function
  calls ``version(id, 1)`` after v2 arrived. Versions loaded through the API are stored when loaded. A shipped
  version is only in the code being deployed, so the enrol path calls ``remember(workflow)`` before it creates an
  enrolment: the first time a shipped version is used, a copy of its document is stored (put-if-absent, once per
  process), and that copy answers ``version()`` after the file has moved on. ``version()`` prefers a stored copy to
  the file, so a file edited without a new version does not change enrolments already running it (``remember``
  logs ``shipped workflow changed without a new version``, and ``GET /v1/workflows/{id}`` marks it).
- **Enabled is a flag per id, not part of a version.** ``enable``/``disable`` store an override that wins over every
  version's ``enabled`` (which is each document's default, and outside its fingerprint): turning a workflow off and
  on needs no new version, and a new version does not switch it back on.
- **``enabled()`` is cached per process for ``ttl_seconds`` (30 s).** The enrol path asks for every event; the cache
  keeps that to about one Query per half minute per warm function. So enabling, disabling or loading a version takes
  effect within the TTL, not at once (the API's own reads are never cached). When a refresh fails, the previous
  answer keeps serving (logged) rather than failing every event.

Pure: the store is the ``WorkflowStore`` port (``shared.adapters.workflow_store`` on ProfileTable).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from shared.clock import now as clock_now
from shared.errors import Conflict, PayloadTooLarge, PermanentError, RetryableError
from shared.observability import logger
from shared.workflows.catalog import UnknownWorkflow, WorkflowCatalog
from shared.workflows.language import TemplateLookup, Workflow, WorkflowInvalid, load_workflow

#: How long ``enabled()`` answers from memory before it reads the store again.
DEFAULT_TTL_SECONDS: Final = 30.0
#: The largest document stored (its JSON text): a version item and the head's copy of it both fit DynamoDB's 400 KB.
MAX_DOCUMENT_BYTES: Final = 128 * 1024

Source = Literal["shipped", "api"]
SHIPPED: Final = "shipped"
API: Final = "api"


# ------------------------------------------------------------------------------------------------------- errors


class VersionExists(Conflict):
    """The id and version are stored with another document: versions are immutable."""

    code = "workflow_version_exists"


class VersionNotNewer(Conflict):
    """A ``PUT`` whose version is not above the shipped file's, or not above the newest stored one."""

    code = "workflow_version_not_newer"


class StoredWorkflowInvalid(PermanentError):
    """A stored document no longer loads (a later release changed the language): it names the workflow and why."""

    code = "stored_workflow_invalid"


# -------------------------------------------------------------------------------------------------- the ports


class WorkflowSource(Protocol):
    """What the workflow functions read workflows from."""

    def enabled(self) -> tuple[Workflow, ...]:
        """The newest version of every enabled workflow (what triggers may enrol into)."""
        ...

    def version(self, workflow_id: str, version: int) -> Workflow:
        """An exact version, enabled or not (a running enrolment keeps its version); ``UnknownWorkflow`` if absent."""
        ...


class RememberingSource(WorkflowSource, Protocol):
    """The enrol path's view: it also keeps a copy of each shipped version it enrols anyone on."""

    def remember(self, workflow: Workflow) -> None:
        """Store ``workflow``'s document under its id and version unless stored already."""
        ...


@dataclass(frozen=True)
class StoredVersion:
    """One version as stored: the document (the raw mapping as loaded), its fingerprint, where it came from.

    ``loaded_by`` is the API caller's subject; None for a shipped version's copy (``remember``).
    """

    workflow_id: str
    version: int
    document: Mapping[str, Any]
    fingerprint: str
    source: Source
    loaded_by: str | None
    loaded_at: datetime


@dataclass(frozen=True)
class WorkflowState:
    """What is stored for a workflow id besides its versions: the enabled override and the newest API version."""

    workflow_id: str
    enabled: bool | None = None
    enabled_by: str | None = None
    enabled_at: datetime | None = None
    newest: StoredVersion | None = None


class WorkflowStore(Protocol):
    """Port: where versions and overrides are kept (``shared.adapters.workflow_store.WorkflowStore``)."""

    def states(self) -> tuple[WorkflowState, ...]:
        """Every workflow id with a stored override or API version (one read: tens of workflows, not thousands)."""
        ...

    def state(self, workflow_id: str) -> WorkflowState | None:
        """One id's state; None when nothing is stored for it."""
        ...

    def stored_version(self, workflow_id: str, version: int) -> StoredVersion | None:
        """One stored version (strongly consistent); None when absent."""
        ...

    def versions(self, workflow_id: str) -> tuple[StoredVersion, ...]:
        """Every stored version of an id, oldest first."""
        ...

    def add_newest(self, stored: StoredVersion) -> bool:
        """Store a version and make it the id's newest, at once; False (nothing written) when the version exists or
        the stored newest is not below it."""
        ...

    def keep(self, stored: StoredVersion) -> bool:
        """Store a version unless it exists (the newest is not touched); False when it existed."""
        ...

    def set_enabled(self, workflow_id: str, enabled: bool, by: str, at: datetime) -> WorkflowState:
        """Store the override; the state as it is now."""
        ...


# ----------------------------------------------------------------------------------------------------- views


def trigger_summary(workflow: Workflow) -> dict[str, Any]:
    """What enrols a customer, without its conditions: ``{"type": "event", "event": "document.downloaded"}``."""
    return workflow.trigger.model_dump(mode="json", exclude_none=True, exclude={"when", "audience", "keywords"})


def _stamp(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


@dataclass(frozen=True)
class WorkflowSummary:
    """A workflow id as it stands: its newest version, where that came from, and whether it enrols anyone."""

    workflow: Workflow
    source: Source
    enabled: bool
    state: WorkflowState | None = None
    warnings: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        """The API's JSON for it."""
        override = self.state if self.state is not None and self.state.enabled is not None else None
        return {
            "id": self.workflow.id,
            "name": self.workflow.name,
            "description": self.workflow.description,
            "version": self.workflow.version,
            "enabled": self.enabled,
            "enabled_by": override.enabled_by if override else None,
            "enabled_at": _stamp(override.enabled_at) if override else None,
            "source": self.source,
            "trigger": trigger_summary(self.workflow),
            "fingerprint": self.workflow.fingerprint,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class VersionDetail:
    """One version: the checked workflow, its document, where it came from, who loaded it and when."""

    workflow: Workflow
    document: Mapping[str, Any]
    source: Source
    loaded_by: str | None = None
    loaded_at: datetime | None = None
    note: str | None = None

    def listing(self) -> dict[str, Any]:
        """The entry in a workflow's list of versions."""
        entry = {
            "version": self.workflow.version,
            "source": self.source,
            "fingerprint": self.workflow.fingerprint,
            "loaded_by": self.loaded_by,
            "loaded_at": _stamp(self.loaded_at),
        }
        return {**entry, "note": self.note} if self.note else entry

    def body(self) -> dict[str, Any]:
        """The API's JSON for it, document included."""
        return {"id": self.workflow.id, **self.listing(), "document": dict(self.document)}


@dataclass(frozen=True)
class WorkflowDetail:
    """``GET /v1/workflows/{id}``: the summary, the newest version's document and every version known."""

    summary: WorkflowSummary
    document: Mapping[str, Any]
    versions: tuple[VersionDetail, ...]

    def body(self) -> dict[str, Any]:
        """The API's JSON for it."""
        return {
            **self.summary.body(),
            "document": dict(self.document),
            "versions": [version.listing() for version in self.versions],
        }


@dataclass(frozen=True)
class Loaded:
    """What a ``PUT`` did: stored a new version (``created``), or found this very document stored already."""

    created: bool
    version: VersionDetail

    def body(self) -> dict[str, Any]:
        """The API's JSON for it."""
        return {"created": self.created, **self.version.body()}


def shipped_document(workflow: Workflow) -> dict[str, Any]:
    """A shipped workflow's document as the API shows and ``remember`` stores it: its canonical JSON form, which
    ``load_workflow`` reads back to the same fingerprint (the YAML's comments and anchors are not kept)."""
    return workflow.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class _Snapshot:
    read_at: float
    summaries: tuple[WorkflowSummary, ...]
    enabled: tuple[Workflow, ...]


# -------------------------------------------------------------------------------------------------- registry


class WorkflowRegistry:
    """The shipped catalog and the store, as one set of versioned workflows (a ``RememberingSource``).

    Parameters
    ----------
    store : WorkflowStore
        Where API versions, shipped copies and enabled overrides are kept.
    shipped : WorkflowCatalog
        The files of this deployment (``shipped_workflows()``).
    templates : TemplateLookup, optional
        What ``send`` steps of validated and loaded documents are checked against (``shipped_catalog()``).
        Documents read back from the store are not checked again: they were when they were loaded, and a running
        enrolment must stay readable.
    ttl_seconds : float
        How long ``enabled()`` answers from memory.
    monotonic : callable
        The clock of that cache (tests pass their own).
    clock : callable
        The time a version is loaded or an override set at (``shared.clock.now``).
    """

    def __init__(
        self,
        store: WorkflowStore,
        shipped: WorkflowCatalog,
        *,
        templates: TemplateLookup | None = None,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = clock_now,
    ) -> None:
        self._store = store
        self._shipped = shipped
        self._templates = templates
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._now = clock
        self._snapshot: _Snapshot | None = None
        # Versions are immutable, so what was read once is kept for the process's life, keyed with the fingerprint.
        self._parsed: dict[tuple[str, int, str], Workflow] = {}
        self._versions: dict[tuple[str, int], Workflow] = {}
        self._kept: set[tuple[str, int, str]] = set()

    # ---------------------------------------------------------------------------------- WorkflowSource

    def enabled(self) -> tuple[Workflow, ...]:
        """The newest version of every enabled workflow, sorted by id; from memory for ``ttl_seconds``.

        Raises
        ------
        RetryableError
            The store could not be read and there is no earlier answer to serve.
        """
        return self._snapshot_within_ttl().enabled

    def version(self, workflow_id: str, version: int) -> Workflow:
        """Version ``version`` of ``workflow_id``, enabled or not: the stored copy, else the shipped file at that
        version. Read once per process (a version never changes).

        Raises
        ------
        UnknownWorkflow
            Neither the store nor the files have that version.
        StoredWorkflowInvalid
            The stored document no longer loads.
        """
        known = self._versions.get((workflow_id, version))
        if known is not None:
            return known
        stored = self._store.stored_version(workflow_id, version)
        if stored is not None:
            workflow = self._load_stored(stored)
        else:
            shipped = self._shipped_or_none(workflow_id)
            if shipped is None or shipped.version != version:
                raise UnknownWorkflow(f"Workflow {workflow_id!r} has no version {version}.")
            workflow = shipped
        self._versions[(workflow_id, version)] = workflow
        return workflow

    def remember(self, workflow: Workflow) -> None:
        """Keep a copy of the version a customer is being enrolled on, so ``version()`` finds it after the file
        moves on. Put-if-absent, once per process per version; nothing to do for a version loaded through the API.

        The enrol path calls it before it creates the enrolment (a crash in between leaves a harmless copy).
        """
        key = (workflow.id, workflow.version, workflow.fingerprint)
        if key in self._kept or key in self._parsed:  # remembered already, or read from the store
            return
        stored = StoredVersion(
            workflow_id=workflow.id,
            version=workflow.version,
            document=shipped_document(workflow),
            fingerprint=workflow.fingerprint,
            source=SHIPPED,
            loaded_by=None,
            loaded_at=self._now(),
        )
        if not self._store.keep(stored):
            existing = self._store.stored_version(workflow.id, workflow.version)
            if existing is not None and existing.fingerprint != workflow.fingerprint:
                logger.warning(
                    "shipped workflow changed without a new version",
                    extra={"workflow_id": workflow.id, "workflow_version": workflow.version,
                           "stored_fingerprint": existing.fingerprint, "file_fingerprint": workflow.fingerprint},
                )  # fmt: skip
        self._kept.add(key)

    # ---------------------------------------------------------------------------------------- the API

    def validate(self, document: Any, *, expected_id: str | None = None) -> Workflow:
        """Check a document as ``PUT`` would, writing nothing.

        Raises
        ------
        WorkflowInvalid
            It breaks the language, names a template that does not exist, or its id is not ``expected_id``; the
            ``details`` name the workflow, step and field of each problem.
        """
        if not isinstance(document, Mapping):
            message = "a workflow is a JSON object with id, version, name, trigger and steps"
            detail = {"workflow": "?", "step": None, "field": None, "message": message}
            raise WorkflowInvalid(f"workflow '?': {message}", details=[detail])
        if expected_id is not None:
            given = document.get("id")
            if given != expected_id:
                message = f"must be {expected_id!r}, the id in the path"
                detail = {"workflow": str(given or "?"), "step": None, "field": "id", "message": message}
                raise WorkflowInvalid(f"workflow {detail['workflow']!r}: field id: {message}", details=[detail])
        return load_workflow(document, templates=self._templates, expected_id=expected_id)

    def put(self, workflow_id: str, document: Any, *, by: str) -> Loaded:
        """Store ``document`` as a new version of ``workflow_id`` (a ``PUT``).

        Returns
        -------
        Loaded
            ``created`` False when this very document (same fingerprint) is stored under its version already.

        Raises
        ------
        WorkflowInvalid
            As ``validate`` (with the path's id).
        PayloadTooLarge
            The document is over ``MAX_DOCUMENT_BYTES``.
        VersionExists
            The version is stored with another document.
        VersionNotNewer
            The version is not above the shipped file's, or not above the newest stored one.
        """
        workflow = self.validate(document, expected_id=workflow_id)
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_DOCUMENT_BYTES:
            raise PayloadTooLarge(f"A workflow document may be at most {MAX_DOCUMENT_BYTES} bytes of JSON.")
        shipped = self._shipped_or_none(workflow_id)
        if shipped is not None and workflow.version <= shipped.version:
            raise VersionNotNewer(
                f"Workflow {workflow_id!r} ships at version {shipped.version}, and the file is the truth for its"
                f" versions: load version {shipped.version + 1} or higher."
            )
        stored = StoredVersion(
            workflow_id=workflow_id,
            version=workflow.version,
            document=json.loads(text),
            fingerprint=workflow.fingerprint,
            source=API,
            loaded_by=by,
            loaded_at=self._now(),
        )
        if self._store.add_newest(stored):
            self._snapshot = None
            logger.info("workflow version loaded", extra={"workflow_id": workflow_id,
                        "workflow_version": workflow.version, "fingerprint": workflow.fingerprint})  # fmt: skip
            return Loaded(created=True, version=self._detail(stored, workflow))
        existing = self._store.stored_version(workflow_id, workflow.version)
        if existing is not None:
            if existing.fingerprint == workflow.fingerprint:
                return Loaded(created=False, version=self._detail(existing, self._load_stored(existing)))
            raise VersionExists(
                f"Version {workflow.version} of workflow {workflow_id!r} is stored with other content; versions are"
                " immutable: bump version."
            )
        state = self._store.state(workflow_id)
        if state is None or state.newest is None:  # the version was there a moment ago and is gone: a race
            raise RetryableError(f"Workflow {workflow_id!r} changed while loading it; try again.")
        newest = state.newest.version
        raise VersionNotNewer(f"Workflow {workflow_id!r} is at version {newest}: load version {newest + 1} or higher.")

    def set_enabled(self, workflow_id: str, enabled: bool, *, by: str) -> WorkflowSummary:
        """Turn a workflow on or off for new enrolments (running ones go on); takes effect within the TTL.

        Raises
        ------
        UnknownWorkflow
            The id is neither shipped nor loaded through the API.
        """
        state = self._store.state(workflow_id)
        if self._summary(workflow_id, state) is None:
            raise self._unknown(workflow_id)
        state = self._store.set_enabled(workflow_id, enabled, by, self._now())
        self._snapshot = None
        logger.info("workflow switched", extra={"workflow_id": workflow_id, "enabled": enabled})
        summary = self._summary(workflow_id, state)
        assert summary is not None  # it existed a moment ago, and overrides do not remove versions
        return summary

    def workflows(self) -> tuple[WorkflowSummary, ...]:
        """Every workflow, shipped or loaded, by id: read now (not the cache), and refreshing it."""
        return self._refresh().summaries

    def detail(self, workflow_id: str) -> WorkflowDetail:
        """One workflow: its summary, the newest version's document, and every version stored or shipped.

        Raises
        ------
        UnknownWorkflow
            The id is neither shipped nor loaded through the API.
        """
        summary = self._summary(workflow_id, self._store.state(workflow_id))
        if summary is None:
            raise self._unknown(workflow_id)
        by_version = {stored.version: self._detail(stored) for stored in self._store.versions(workflow_id)}
        shipped = self._shipped_or_none(workflow_id)
        if shipped is not None:
            copy = by_version.get(shipped.version)
            if copy is None:
                by_version[shipped.version] = VersionDetail(shipped, shipped_document(shipped), SHIPPED)
            elif copy.source == SHIPPED and copy.workflow.fingerprint != shipped.fingerprint:
                note = (
                    "the shipped file changed without a new version; enrolments run this stored copy, so give the"
                    " file a higher version"
                )
                by_version[shipped.version] = dataclasses.replace(copy, note=note)
        newest = summary.state.newest if summary.state is not None else None
        if summary.source == API and newest is not None:
            document = newest.document
        else:
            document = shipped_document(summary.workflow)
        return WorkflowDetail(summary, document, tuple(by_version[version] for version in sorted(by_version)))

    def version_detail(self, workflow_id: str, version: int) -> VersionDetail:
        """One version with its document (``GET /v1/workflows/{id}/versions/{version}``).

        Raises
        ------
        UnknownWorkflow
            No such version, stored or shipped.
        """
        stored = self._store.stored_version(workflow_id, version)
        if stored is not None:
            return self._detail(stored)
        shipped = self._shipped_or_none(workflow_id)
        if shipped is None or shipped.version != version:
            raise UnknownWorkflow(f"Workflow {workflow_id!r} has no version {version}.")
        return VersionDetail(shipped, shipped_document(shipped), SHIPPED)

    def exists(self, workflow_id: str) -> bool:
        """Tell whether the id is shipped or was ever stored (a file removed from the repo keeps its used versions)."""
        return self._shipped_or_none(workflow_id) is not None or bool(self._store.versions(workflow_id))

    # ------------------------------------------------------------------------------------------ inside

    def _snapshot_within_ttl(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._monotonic() - snapshot.read_at < self._ttl:
            return snapshot
        try:
            return self._refresh()
        except RetryableError:
            if snapshot is None:
                raise
            logger.warning("workflow store unreadable; serving the previous list of workflows")
            return snapshot

    def _refresh(self) -> _Snapshot:
        states = {state.workflow_id: state for state in self._store.states()}
        summaries = []
        for workflow_id in sorted(set(self._shipped.ids()) | set(states)):
            try:
                summary = self._summary(workflow_id, states.get(workflow_id))
            except StoredWorkflowInvalid as error:
                # One broken document must not stop every other workflow from enrolling.
                logger.error("stored workflow does not load", extra={"workflow_id": workflow_id,
                             "error": error.message})  # fmt: skip
                continue
            if summary is not None:
                summaries.append(summary)
        enabled = tuple(summary.workflow for summary in summaries if summary.enabled)
        self._snapshot = _Snapshot(self._monotonic(), tuple(summaries), enabled)
        return self._snapshot

    def _summary(self, workflow_id: str, state: WorkflowState | None) -> WorkflowSummary | None:
        shipped = self._shipped_or_none(workflow_id)
        newest = state.newest if state is not None else None
        warnings: list[str] = []
        if newest is not None and (shipped is None or newest.version >= shipped.version):
            workflow = self._load_stored(newest)
            self._versions[(workflow_id, newest.version)] = workflow
            source: Source = API
            if shipped is not None and shipped.version == newest.version and shipped.fingerprint != newest.fingerprint:
                warnings.append(
                    f"the shipped file is at version {shipped.version}, which was loaded through the API with other"
                    f" content; that one runs: give the file version {shipped.version + 1} or higher"
                )
        elif shipped is not None:
            workflow, source = shipped, SHIPPED
        else:
            return None
        override = state.enabled if state is not None else None
        enabled = workflow.enabled if override is None else override
        return WorkflowSummary(workflow, source, enabled, state, tuple(warnings))

    def _load_stored(self, stored: StoredVersion) -> Workflow:
        key = (stored.workflow_id, stored.version, stored.fingerprint)
        workflow = self._parsed.get(key)
        if workflow is None:
            try:
                workflow = load_workflow(stored.document, expected_id=stored.workflow_id)
            except WorkflowInvalid as error:
                raise StoredWorkflowInvalid(
                    f"Stored version {stored.version} of workflow {stored.workflow_id!r} no longer loads:"
                    f" {error.message}",
                    details=error.details,
                ) from None
            self._parsed[key] = workflow
        return workflow

    def _detail(self, stored: StoredVersion, workflow: Workflow | None = None) -> VersionDetail:
        return VersionDetail(
            workflow or self._load_stored(stored), stored.document, stored.source, stored.loaded_by, stored.loaded_at
        )

    def _shipped_or_none(self, workflow_id: str) -> Workflow | None:
        return self._shipped.get(workflow_id) if workflow_id in self._shipped.ids() else None

    def _unknown(self, workflow_id: str) -> UnknownWorkflow:
        known = ", ".join(summary.workflow.id for summary in self.workflows()) or "none"
        return UnknownWorkflow(f"No workflow {workflow_id!r} (known: {known}).")
