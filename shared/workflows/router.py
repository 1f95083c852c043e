"""Routing domain events to workflows: enrol the customer where an event is a trigger, wake their enrolments that
listen to it. Runs on EventsQueue (every event Hilo and the core systems publish); the steps themselves run on
WorkflowQueue (``shared.workflows.steps``), so this function only decides and queues.

Per event of a customer: one query for their enrolments (every workflow's: re-entry, frequency, and who listens),
and the profile only when some enabled workflow's trigger takes this event type. An enrolment is created with its
(workflow, key) guard in one transaction; when that is refused (a redelivered trigger, or a twin trigger racing this
one) a consistent re-read lets ``enrol`` tell which, and a redelivered trigger queues its ``Start`` again, in case the
first delivery stopped before queueing it. WorkflowQueue's deduplication makes that one message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.errors import RetryableError
from shared.ingest.ports import Clock
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.observability import logger
from shared.workflows.catalog import UnknownWorkflow
from shared.workflows.engine import (
    Enrolled,
    Enrolment,
    EventArrived,
    NotEnrolled,
    Refusal,
    StepWake,
    enrol,
    listens,
)
from shared.workflows.language import Workflow
from shared.workflows.registry import RememberingSource
from shared.workflows.steps import ProfileReader, reachable


class EnrolmentBook(Protocol):
    """The enrolment repository (``EnrolmentStore``)."""

    def enrolments(self, customer_id: str, *, consistent: bool = False) -> tuple[Enrolment, ...]: ...

    def create(self, enrolment: Enrolment) -> bool: ...


class WakeQueue(Protocol):
    """WorkflowQueue."""

    def send(self, wake: StepWake) -> None: ...


@dataclass(frozen=True)
class Routed:
    """What one event did: enrolments started, enrolments woken, and why any trigger enrolled nobody."""

    started: tuple[str, ...] = ()
    woken: tuple[str, ...] = ()
    refused: tuple[tuple[str, Refusal], ...] = ()


class WorkflowEvents:
    """The workflow events function's use case."""

    def __init__(
        self,
        *,
        enrolments: EnrolmentBook,
        workflows: RememberingSource,
        profiles: ProfileReader,
        wakes: WakeQueue,
        clock: Clock,
    ) -> None:
        self._enrolments = enrolments
        self._workflows = workflows
        self._profiles = profiles
        self._wakes = wakes
        self._clock = clock

    def route(self, event: DomainEvent) -> Routed:
        """Enrol and wake for ``event``; an event without a customer concerns no enrolment."""
        if event.customer_id is None:
            return Routed()
        customer_id = event.customer_id
        previous = self._enrolments.enrolments(customer_id)
        woken = []
        for enrolment in previous:
            if enrolment.status.open:
                try:
                    workflow = self._workflows.version(enrolment.workflow_id, enrolment.workflow_version)
                except UnknownWorkflow:
                    # That enrolment cannot run (its wakes park in WorkflowDlq); the customer's other journeys can.
                    logger.error("open enrolment of an unknown workflow version",
                                 extra={"enrolment_id": enrolment.id, "workflow_id": enrolment.workflow_id,
                                        "workflow_version": enrolment.workflow_version})  # fmt: skip
                    continue
                if listens(enrolment, event, workflow):
                    self._wakes.send(StepWake.of(enrolment, EventArrived(event=event)))
                    woken.append(enrolment.id)
        triggered = [workflow for workflow in self._workflows.enabled() if event.type in workflow.trigger.event_types]
        started: list[str] = []
        refused: list[tuple[str, Refusal]] = []
        if triggered:
            profile = self._profiles.get_profile(customer_id)
            for workflow in triggered:
                outcome = self._enrol(workflow, event, profile, previous)
                if isinstance(outcome, NotEnrolled):
                    if outcome.reason != Refusal.NOT_TRIGGERED:
                        refused.append((workflow.id, outcome.reason))
                    continue
                self._wakes.send(outcome.start)
                started.append(outcome.enrolment.id)
                previous = (*previous, outcome.enrolment)  # the next workflow's frequency counts this one
        return Routed(tuple(started), tuple(woken), tuple(refused))

    def _enrol(
        self, workflow: Workflow, event: DomainEvent, profile: CustomerProfile | None, previous: Sequence[Enrolment]
    ) -> Enrolled | NotEnrolled:
        channels = reachable(profile)
        outcome = enrol(workflow, event, profile, previous, self._clock(), channels=channels)
        if not isinstance(outcome, Enrolled) or outcome.duplicate:
            return outcome
        self._workflows.remember(workflow)
        if self._enrolments.create(outcome.enrolment):
            return outcome
        # Refused: this trigger was enrolled already, or a twin trigger holds the (workflow, key). Ask again.
        assert event.customer_id is not None
        fresh = self._enrolments.enrolments(event.customer_id, consistent=True)
        again = enrol(workflow, event, profile, fresh, self._clock(), channels=channels)
        if isinstance(again, Enrolled) and not again.duplicate:
            # Nothing open holds the guard, yet it was taken: a write not visible yet. SQS will try again.
            raise RetryableError(f"Workflow {workflow.id!r}: the enrolment guard is held; try again.")
        return again
