"""The sender use case: carry out one send job through one provider, once, and record what the provider said.

One per provider (a Lambda each: its credentials, its rate limits, its outages stay its own). The job is complete,
so the only read is the message's own item: a job whose message already left ``queued`` (a duplicate job, a
redelivery after success) is acknowledged without calling the provider again. A permanent refusal marks the message
``failed`` with the provider's reason and queues the fallback to the next channel; a transient one propagates as
``RetryableError`` so SQS tries again (and parks the job in SendDlq after five tries).

Duplicates the design cannot rule out: a crash after the provider accepted and before the record is written makes
the redelivered job call the provider again. Twilio, Meta, Telegram and SES take no idempotency key on send, so the
window is the few milliseconds between their answer and our write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from shared.models.events import DomainEvent
from shared.models.outbound import OutboundCommand, SendJob
from shared.outbound.delivery import Accepted, DeliveryRejected, ProviderClient
from shared.outbound.fallback import plan_fallback

#: A synchronous refusal's fallback is placed this long after the original: deterministic, so a redelivery repeats it.
_NEXT = timedelta(milliseconds=1)


class SendStore(Protocol):
    def send_pending(self, job: SendJob) -> bool: ...

    def record_sent(self, job: SendJob, accepted: Accepted, at: datetime) -> bool: ...

    def record_rejected(
        self, job: SendJob, rejected: DeliveryRejected, at: datetime, fallback: OutboundCommand | None
    ) -> bool: ...


class CommandSender(Protocol):
    def send(self, command: OutboundCommand) -> None: ...


class EventSink(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> None: ...


class Sent(StrEnum):
    """What ``Sender.run`` did."""

    SENT = "sent"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@dataclass
class Sender:
    """Sends jobs through one provider client."""

    store: SendStore
    client: ProviderClient
    outbound: CommandSender
    events: EventSink
    failure_event: Callable[[SendJob, DeliveryRejected, datetime, OutboundCommand | None], DomainEvent]
    clock: Callable[[], datetime]

    def run(self, job: SendJob) -> Sent:
        """Send ``job`` unless its message already left; record the answer; fall back on a permanent refusal."""
        if not self.store.send_pending(job):
            return Sent.DUPLICATE
        try:
            accepted = self.client.send(job)
        except DeliveryRejected as rejected:
            at = self.clock()
            # Fallback and event first: if the record below is lost to a crash, the redelivered job repeats them
            # (the fallback's key and time are deterministic, so the planner makes it one message) instead of
            # skipping them. The fallback sits on the timeline just after the message it replaces.
            fallback = plan_fallback(job.command, job.channel, rejected.rejection, job.command.requested_at + _NEXT)
            if fallback is not None:
                self.outbound.send(fallback)
            self.events.publish([self.failure_event(job, rejected, at, fallback)])
            self.store.record_rejected(job, rejected, at, fallback)
            return Sent.REJECTED
        self.store.record_sent(job, accepted, self.clock())
        return Sent.SENT
