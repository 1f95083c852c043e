"""Delivery status: what a provider's callback does to the outbound message it names.

A ``StatusEnvelope`` (StatusQueue) names the provider's id of a message Hilo sent. The sender left a pointer
``MSG#<provider>#<provider message id>`` to the message's timeline item; the status moves forward on that item by a
conditional write whose condition is ``shared.models.message.status_may_follow`` (queued < sent < delivered < read;
failed after queued or sent; delivered or read may still follow failed; nothing goes back). Only a write that moved
the message has effects:

- an event: ``message.delivered``, ``message.read`` or ``message.failed`` (ids, codes and the channel; never content
  or addresses). ``sent`` and ``canceled`` move the message but publish nothing: the sender already told the world
  the message left when the provider accepted it, and a carrier's "sent" adds nothing a consumer acts on;
- on ``failed`` with a code ``shared.outbound.failure_codes`` knows as permanent, the fallback
  (``shared.outbound.fallback.plan_fallback``): recorded on the failed message (``fallback_key``,
  ``fallback_message_id``), then queued on OutboundQueue.

Callbacks race the sender (Twilio's first callbacks come within milliseconds of the API's answer): a missing pointer
is retried while the callback is younger than ``ORPHAN_GRACE``, then acknowledged as an orphan (a message sent
outside Hilo, from the provider's console). The same callback twice is one transition, one event and one fallback: a
repeat fails the condition and does nothing. The exception is a redelivery (SQS received the record before) of a
report the item already holds: the earlier attempt may have stopped between the write and its effects, so they are
repeated under the same ids (events are seeded by the report; the fallback's key is deterministic).

No AWS here: ``shared.adapters.status_store`` (ProfileTable), ``shared.adapters.event_publisher`` and
``shared.adapters.outbound_queue`` implement the ports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import PermanentError, RetryableError
from shared.ingest.ports import Clock, EventPublisher
from shared.models.common import Channel, Provider
from shared.models.events import DomainEvent
from shared.models.inbound import QueueMessage, StatusEnvelope
from shared.models.message import DeliveryStatus, StatusUpdate, status_may_follow
from shared.models.outbound import OutboundCommand, SendJob, TemplateContent
from shared.outbound.delivery import DeliveryRejected, Rejection
from shared.outbound.failure_codes import failure_code, rejection_for
from shared.outbound.fallback import plan_fallback

SOURCE: Final = "hilo.status"
#: The source of ``message.failed`` when the provider refused the message at once (``failure_event``).
SENDER: Final = "hilo.sender"
#: The event each status publishes when it moves a message; the others publish nothing.
EVENT_TYPES: Final[Mapping[DeliveryStatus, str]] = {
    DeliveryStatus.DELIVERED: "message.delivered",
    DeliveryStatus.READ: "message.read",
    DeliveryStatus.FAILED: "message.failed",
}
#: How long a callback whose pointer is missing is retried before it counts as an orphan. Shorter than what
#: StatusQueue gives a record (5 receives, 180 s apart: the last comes about 12 minutes after the first), so an
#: orphan is acknowledged on a late attempt instead of being parked in StatusDlq.
ORPHAN_GRACE: Final = timedelta(minutes=10)


# ------------------------------------------------------------------------------------------ values at the ports


@dataclass(frozen=True)
class MessagePointer:
    """The sender's pointer from a provider's id to the message: whose partition, which item."""

    customer_id: str
    timeline_sk: str
    message_id: str
    channel: Channel


@dataclass(frozen=True)
class StoredMessage:
    """What a status write needs back from the message's item (``ALL_NEW`` after a write, ``ALL_OLD`` if refused)."""

    customer_id: str
    conversation_id: str | None
    status: DeliveryStatus | None
    history: tuple[StatusUpdate, ...]
    #: The ``OutboundCommand`` as JSON, kept by the planner so a failure can plan the fallback.
    outbound_command: str | None = None
    purpose: str | None = None
    template_id: str | None = None

    def holds(self, update: StatusUpdate) -> bool:
        """True when this very report (status and instant) is in the history: an earlier attempt recorded it."""
        return any(entry.status == update.status and entry.at == update.at for entry in self.history)


@dataclass(frozen=True)
class StatusWrite:
    """The outcome of one status write on a message, wherever merges put it.

    ``customers`` lists every partition holding the message, the pointer's first and the live one (the survivor of
    any merges since the send) last; ``applied`` and ``message`` are the live item's.
    """

    applied: bool
    message: StoredMessage | None
    customers: tuple[str, ...]

    @property
    def customer_id(self) -> str:
        """The customer the message belongs to now."""
        return self.customers[-1]


# ------------------------------------------------------------------------------------------ ports


class StatusStore(Protocol):
    """Port: the outbound messages on ProfileTable (``shared.adapters.status_store.StatusStore``)."""

    def find_pointer(self, provider: str, provider_message_id: str) -> MessagePointer | None:
        """The pointer (strongly consistent: the sender may have written it a moment ago); None when absent."""
        ...

    def apply(
        self,
        pointer: MessagePointer,
        update: StatusUpdate,
        may_follow: Sequence[DeliveryStatus],
        *,
        reason: Rejection | None = None,
    ) -> StatusWrite:
        """Append ``update`` if the message's status is one of ``may_follow``, on every copy merges made.

        Raises ``RetryableError`` when a merge is still copying the message to the survivor.
        """
        ...

    def record_fallback(self, write: StatusWrite, timeline_sk: str, fallback: OutboundCommand) -> None:
        """Note on the failed message (every copy) which command replaces it. Idempotent."""
        ...


class CommandSender(Protocol):
    """Port: OutboundQueue.fifo (``shared.adapters.outbound_queue.OutboundQueue``)."""

    def send(self, command: OutboundCommand) -> None:
        """Queue the command (group = its customer, dedup = its key), or raise RetryableError."""
        ...


# ------------------------------------------------------------------------------------------ events


class MessageStatusData(BaseModel):
    """``data`` of ``message.delivered``, ``message.read`` and ``message.failed`` (schema 1): ids and codes only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    customer_id: str
    conversation_id: str | None = None
    channel: Channel
    provider: Provider
    status: DeliveryStatus
    #: ``marketing`` or ``transactional``, and the template, when the planner recorded them (analytics per template).
    purpose: str | None = None
    template_id: str | None = None
    error_code: str | None = None
    #: The failure table's label for ``error_code`` (``shared.outbound.failure_codes``), never the provider's own text:
    #: providers quote the phone number or address in theirs, and events leave the customer's partition.
    error_reason: str | None = None
    #: What ``error_code`` means (``shared.outbound.failure_codes``); None when it is not a known permanent failure.
    rejection: Rejection | None = None
    #: The message that tries another channel, when one was queued.
    fallback_message_id: str | None = None


def known_reason(provider: Provider | str, code: str | None) -> str | None:
    """The failure table's words for a provider's code (safe to publish), or None for a code it does not list."""
    row = failure_code(provider, code)
    return row.meaning if row is not None else None


def status_event(
    data: MessageStatusData, *, at: datetime, correlation_id: str, seed: str, source: str = SOURCE
) -> DomainEvent:
    """The domain event for a status that moved a message; ``seed`` (with ``at``) makes its id repeatable."""
    return DomainEvent.new(
        EVENT_TYPES[data.status],
        source=source,
        correlation_id=correlation_id,
        customer_id=data.customer_id,
        occurred_at=at,
        id_seed=seed,
        data=data,
    )


def failure_event(
    job: SendJob, rejected: DeliveryRejected, at: datetime, fallback: OutboundCommand | None
) -> DomainEvent:
    """``message.failed`` for a message its provider refused at once (the sender's synchronous path), in the same
    shape as an asynchronous failure's; ``fallback`` is the command the sender queued to replace it, if any."""
    content = job.command.content
    data = MessageStatusData(
        message_id=job.message_id,
        customer_id=job.customer_id,
        conversation_id=job.conversation_id,
        channel=job.channel,
        provider=job.provider,
        status=DeliveryStatus.FAILED,
        purpose=str(job.purpose),
        template_id=content.template_id if isinstance(content, TemplateContent) else None,
        error_code=rejected.provider_code or None,
        error_reason=known_reason(job.provider, rejected.provider_code),
        rejection=rejected.rejection,
        fallback_message_id=fallback.message_id if fallback is not None else None,
    )
    return status_event(data, at=at, correlation_id=job.correlation_id, seed=f"send:{job.key}:failed", source=SENDER)


# ------------------------------------------------------------------------------------------ the use case


class StatusResult(StrEnum):
    """What one callback did."""

    #: It moved the message.
    APPLIED = "applied"
    #: A redelivery of a report already recorded: its effects were repeated, in case the first attempt stopped.
    RESUMED = "resumed"
    #: It did not move the message (late, duplicate, or a status that never moves anything, like ``queued``).
    IGNORED = "ignored"
    #: No pointer, and too old to be racing the sender: a message Hilo did not send.
    ORPHAN = "orphan"
    #: A pointer whose message item is gone.
    MISSING = "missing"


@dataclass(frozen=True)
class StatusOutcome:
    """What happened, for the log line and the metrics (ids only)."""

    result: StatusResult
    customer_id: str | None = None
    message_id: str | None = None
    events: tuple[str, ...] = ()
    #: The fallback queued (its message id is Hilo's; its key is the caller's, so only the id is logged).
    fallback_key: str | None = None
    fallback_message_id: str | None = None
    #: Why a failure queued no fallback when one might be expected (no command on the item, or an unreadable one).
    note: str | None = None


def parse_status(body: str | bytes) -> StatusEnvelope:
    """The StatusEnvelope a StatusQueue body carries.

    StatusQueue holds status envelopes only. A claim check cannot occur: an envelope's fields are bounded (a few KB
    at most), far below the 200 KB at which ``QueuePublisher`` stores a body in S3; so a claim check, an inbound
    envelope or anything else is poison.

    Raises
    ------
    PermanentError
        The body is not a status envelope (the message never includes the body: it may hold personal data).
    """
    try:
        parsed = QueueMessage.parse(body)
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PermanentError("The queue body is not a valid status envelope.") from error
    if not isinstance(parsed, StatusEnvelope):
        raise PermanentError(f"A {parsed.type} body does not belong on the status queue.")
    return parsed


class DeliveryStatuses:
    """Apply provider status callbacks to outbound messages; the status function's use case."""

    def __init__(
        self,
        store: StatusStore,
        publisher: EventPublisher,
        outbound: CommandSender,
        clock: Clock,
        *,
        orphan_grace: timedelta = ORPHAN_GRACE,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.outbound = outbound
        self.clock = clock
        self.orphan_grace = orphan_grace

    def __call__(self, envelope: StatusEnvelope, *, redelivered: bool = False) -> StatusOutcome:
        """Apply one callback.

        Parameters
        ----------
        envelope : StatusEnvelope
            The provider's report.
        redelivered : bool
            SQS handed this record over before (``ApproximateReceiveCount`` > 1): if the message already holds this
            report, an earlier attempt wrote it and may have stopped before its effects, so they are repeated.

        Returns
        -------
        StatusOutcome
            What it did.

        Raises
        ------
        RetryableError
            The pointer is not there yet and the callback is young; a merge is still copying the message; a store,
            queue or bus is unavailable.
        """
        may_follow = tuple(status for status in DeliveryStatus if status_may_follow(status, envelope.status))
        if not may_follow:
            return StatusOutcome(StatusResult.IGNORED)  # ``queued``: every message has a status already, no read
        pointer = self.store.find_pointer(envelope.provider, envelope.provider_message_id)
        if pointer is None:
            if self.clock() - envelope.occurred_at < self.orphan_grace:
                raise RetryableError("The message's pointer is not written yet (the sender is still recording it).")
            return StatusOutcome(StatusResult.ORPHAN)
        failed = envelope.status == DeliveryStatus.FAILED
        # Error details belong to failures only (``StatusUpdate`` says so), and blank ones are no details.
        update = StatusUpdate(
            status=envelope.status,
            at=envelope.occurred_at,
            error_code=((envelope.error_code or "").strip() or None) if failed else None,
            error_reason=((envelope.error_reason or "").strip() or None) if failed else None,
        )
        rejection = rejection_for(envelope.provider, update.error_code) if failed else None
        write = self.store.apply(pointer, update, may_follow, reason=rejection)
        stored = write.message
        if stored is None:
            return StatusOutcome(StatusResult.MISSING, write.customer_id, pointer.message_id)
        if write.applied:
            result = StatusResult.APPLIED
        elif redelivered and stored.holds(update):
            result = StatusResult.RESUMED
        else:
            return StatusOutcome(StatusResult.IGNORED, write.customer_id, pointer.message_id)
        fallback, note = self._fallback(pointer, write, stored, rejection, envelope.occurred_at)
        if fallback is not None:
            self.store.record_fallback(write, pointer.timeline_sk, fallback)
            self.outbound.send(fallback)
        events: tuple[str, ...] = ()
        if envelope.status in EVENT_TYPES:
            data = MessageStatusData(
                message_id=pointer.message_id,
                customer_id=write.customer_id,
                conversation_id=stored.conversation_id,
                channel=pointer.channel,
                provider=envelope.provider,
                status=envelope.status,
                purpose=stored.purpose,
                template_id=stored.template_id,
                error_code=update.error_code,
                error_reason=known_reason(envelope.provider, update.error_code),
                rejection=rejection,
                fallback_message_id=fallback.message_id if fallback is not None else None,
            )
            seed = f"{envelope.provider}:{envelope.provider_message_id}:{envelope.status}"
            event = status_event(data, at=envelope.occurred_at, correlation_id=envelope.correlation_id, seed=seed)
            self.publisher.publish([event])
            events = (event.type,)
        return StatusOutcome(
            result,
            write.customer_id,
            pointer.message_id,
            events,
            fallback_key=fallback.key if fallback is not None else None,
            fallback_message_id=fallback.message_id if fallback is not None else None,
            note=note,
        )

    @staticmethod
    def _fallback(
        pointer: MessagePointer,
        write: StatusWrite,
        stored: StoredMessage,
        rejection: Rejection | None,
        at: datetime,
    ) -> tuple[OutboundCommand | None, str | None]:
        if rejection is None:
            return None, None
        if stored.outbound_command is None:
            return None, "the message has no outbound_command to plan a fallback from"
        try:
            command = OutboundCommand.model_validate_json(stored.outbound_command)
        except ValidationError:
            return None, "the message's outbound_command is not a valid command"
        fallback = plan_fallback(command, pointer.channel, rejection, at)
        if fallback is None or len(write.customers) == 1:
            return fallback, None
        # Merged since the send: the next attempt is for the customer (and case) the message belongs to now.
        moved: dict[str, Any] = {"customer_id": write.customer_id, "conversation_id": stored.conversation_id}
        return fallback.model_copy(update=moved), None


def delivery_statuses_from_environment(env: Mapping[str, str]) -> DeliveryStatuses:
    """``DeliveryStatuses`` on ProfileTable, EventsQueue, the integration bus and OutboundQueue (names from
    template.yaml): the one place the status function's real adapters are wired (imported here, not at the top,
    so the use case and its tests do not load botocore)."""
    from shared.adapters.event_publisher import EventPublisher as BusPublisher
    from shared.adapters.outbound_queue import OutboundQueue
    from shared.adapters.status_store import StatusStore as DynamoStatusStore
    from shared.clock import now

    return DeliveryStatuses(
        DynamoStatusStore(env["PROFILE_TABLE_NAME"]),
        BusPublisher(env["EVENTS_QUEUE_URL"], env["EVENT_BUS_NAME"]),
        OutboundQueue(env["OUTBOUND_QUEUE_URL"]),
        now,
    )
