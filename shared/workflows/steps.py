"""Running workflow steps: one WorkflowQueue message (``StepWake``) moves one enrolment on.

Load the enrolment (strongly consistent), run ``advance`` with what woke it, carry out the effects, then save with
optimistic locking. Effects go first because they are all deduplicated by key (``shared.workflows.effects``): a
crash between them and the save, or a lost race, repeats the same input on the same state, which repeats the same
effects, which land once. The opposite order could save a state whose effects never happened.

WorkflowQueue is FIFO with the enrolment as message group, so one enrolment's wakes run one at a time and in order
(a reply and the timer that it beats never race). A version conflict can still happen (SQS redelivering a message
whose first run is still going past its visibility timeout); it is met by reloading and advancing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from shared.errors import RetryableError
from shared.ingest.ports import Clock
from shared.models.common import Channel
from shared.models.customer import CustomerProfile
from shared.outbound.routing import address_on
from shared.workflows.effects import Carried, Effects
from shared.workflows.engine import Customer, Enrolment, StepWake, advance
from shared.workflows.registry import WorkflowSource

#: Reloads after a version conflict before the message is left to SQS's retry.
MAX_CONFLICTS: Final = 3


class Enrolments(Protocol):
    """The enrolment repository (``EnrolmentStore``)."""

    def get(self, customer_id: str, workflow_id: str, enrolment_id: str) -> Enrolment | None: ...

    def save(self, enrolment: Enrolment, expected_version: int) -> bool: ...


class ProfileReader(Protocol):
    """The customer's profile with identities (``ProfileStore.get_profile``)."""

    def get_profile(self, customer_id: str) -> CustomerProfile | None: ...


def reachable(profile: CustomerProfile | None) -> tuple[Channel, ...]:
    """The channels ``profile.channels`` lists: those the customer has an address on."""
    if profile is None:
        return ()
    return tuple(channel for channel in Channel if address_on(profile, channel) is not None)


class Outcome(StrEnum):
    """What a wake did."""

    ADVANCED = "advanced"
    UNCHANGED = "unchanged"  # a stale timer, a repeated event, an ended enrolment
    UNKNOWN = "unknown"  # no such enrolment (never created, or its customer was merged away)


@dataclass(frozen=True)
class Woken:
    """The result of one wake, for the logs: ids, labels and counts only."""

    outcome: Outcome
    status: str | None = None
    step: str | None = None
    carried: Carried | None = None


class WorkflowSteps:
    """The step function's use case."""

    def __init__(
        self,
        *,
        enrolments: Enrolments,
        workflows: WorkflowSource,
        profiles: ProfileReader,
        effects: Effects,
        clock: Clock,
    ) -> None:
        self._enrolments = enrolments
        self._workflows = workflows
        self._profiles = profiles
        self._effects = effects
        self._clock = clock

    def wake(self, message: StepWake) -> Woken:
        """Apply ``message`` to its enrolment.

        Raises
        ------
        UnknownWorkflow
            The enrolment's workflow version is not known (a ``PermanentError``: the message is parked).
        RetryableError
            An adapter failed, or the enrolment kept changing under us; SQS redelivers.
        """
        for _attempt in range(MAX_CONFLICTS):
            enrolment = self._enrolments.get(message.customer_id, message.workflow_id, message.enrolment_id)
            if enrolment is None:
                return Woken(Outcome.UNKNOWN)
            workflow = self._workflows.version(enrolment.workflow_id, enrolment.workflow_version)
            profile = self._profiles.get_profile(enrolment.customer_id)
            customer = Customer(profile=profile, channels=reachable(profile))
            advanced = advance(enrolment, workflow, customer, self._clock(), message.wake)
            if not advanced.changed:
                return Woken(Outcome.UNCHANGED, str(enrolment.status), enrolment.current_step)
            carried = self._effects.carry_out(advanced.enrolment, advanced.effects)
            if self._enrolments.save(advanced.enrolment, enrolment.version):
                new = advanced.enrolment
                return Woken(Outcome.ADVANCED, str(new.status), new.current_step, carried)
        raise RetryableError(f"Enrolment {message.enrolment_id} kept changing while it was advanced; try again.")
