"""The outbound use case: turn a send command into one decided, rendered message on the timeline and a send job.

Every producer goes through ``Outbound.submit``: the agent API calls it directly (so the agent sees the message as
``queued``, with its channel, the moment they send it), and the outbound function calls it for commands from
OutboundQueue (workflows, bots, keyword confirmations, fallbacks, deferred messages whose time came).

For each command: pick the candidate channels (``routing``), ask ``policy.decide`` about each in order (a block moves
to the next; quiet hours defer the message; outside WhatsApp's window only an approved template goes), render the
template for the channel chosen, write the message on the timeline and hand the job to that provider's sender.
Idempotent by the command's ``key``: the timeline item's key derives from it, so a second delivery finds the first
one's item and only re-does what the first may not have finished (enqueue the job, schedule the timer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from pydantic import ValidationError

from shared.errors import NotFound, PermanentError
from shared.ingest.ports import AlreadyRecorded, HeadState, TimelineRecord
from shared.models.common import Channel, Provider
from shared.models.customer import ConsentPurpose, CustomerProfile
from shared.models.message import Address, DeliveryStatus, Direction, MediaPart, Message, StatusUpdate, TextPart
from shared.models.outbound import DirectContent, OutboundCommand, SendJob, TemplateContent
from shared.models.timeline import TimelineEntry, TimelineKind
from shared.outbound.policy import (
    DEFAULT_FREQUENCY_CAP,
    DEFAULT_QUIET_HOURS,
    DEFAULT_TIME_ZONE,
    Action,
    FrequencyCap,
    QuietHours,
    Reason,
    decide,
)
from shared.outbound.rendering import RenderFailed
from shared.outbound.routing import Candidate, candidates

#: Reasons of a canceled message that are the content's fault, not the customer's rules: a caller should fix them.
RENDER_FAILED: Final = "render_failed"
CONTENT_UNSUITABLE: Final = "content_unsuitable"
CONTENT_REASONS: Final = frozenset({RENDER_FAILED, CONTENT_UNSUITABLE})
#: Merges chain (A into B, later B into C); a longer chain than this is a loop.
MAX_MERGE_HOPS: Final = 8
#: A deferred message coming back this early (clocks differ between EventBridge Scheduler and Lambda) is due.
TIMER_SKEW: Final = timedelta(minutes=2)


class Outcome(StrEnum):
    """Where a command stands after ``submit``."""

    QUEUED = "queued"  # the job is with the channel's sender
    DEFERRED = "deferred"  # waiting (quiet hours) until ``until``; decided again then
    CANCELED = "canceled"  # it will not go: ``reason`` says why


@dataclass(frozen=True)
class Submitted:
    """The answer of ``submit``: what the caller (an agent, the queue handler) reports."""

    message_id: str
    outcome: Outcome
    channel: Channel | None
    reason: str
    detail: str
    until: datetime | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class StoredOutbound:
    """The planner's part of an outbound message's timeline item, read back on a redelivery."""

    status: DeliveryStatus | None
    channel: Channel | None
    send_job: str | None
    deferred_until: datetime | None
    reason: str | None


@dataclass(frozen=True)
class EmailThread:
    """The customer's last e-mail in a conversation: what our reply's headers and subject answer."""

    message_id: str
    subject: str | None
    references: tuple[str, ...] = ()


class OutboundRepository(Protocol):
    def card(self, customer_id: str) -> tuple[CustomerProfile, HeadState | None] | None: ...

    def outbound(self, customer_id: str, occurred_at: datetime, entry_id: str) -> StoredOutbound | None: ...

    def record_outbound(self, record: TimelineRecord) -> AlreadyRecorded | None: ...

    def release_deferred(
        self, customer_id: str, occurred_at: datetime, entry_id: str, until: datetime, record: TimelineRecord
    ) -> bool:
        """Replace a deferred message's item with its new decision, if it is still deferred ``until``."""
        ...

    def marketing_sent_since(self, customer_id: str, since: datetime) -> int: ...

    def email_thread(self, customer_id: str, conversation_id: str) -> EmailThread | None: ...


class SendQueues(Protocol):
    def send(self, job: SendJob) -> None: ...


class Timers(Protocol):
    def schedule(self, key: str, at: datetime, body: str, *, group_id: str | None = None) -> None: ...


class TemplateCatalog(Protocol):
    def get(self, template_id: str) -> Any: ...


@dataclass(frozen=True)
class Rules:
    """The tenant's sending rules (settings; the defaults are ``policy``'s)."""

    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    frequency: FrequencyCap = DEFAULT_FREQUENCY_CAP
    default_time_zone: str = DEFAULT_TIME_ZONE
    email_from: str | None = None


@dataclass
class Outbound:
    """The one way anything is sent to a customer."""

    repository: OutboundRepository
    send_queues: SendQueues
    timers: Timers
    catalog: TemplateCatalog
    #: The channels this deployment can send on, and who carries each (from the settings).
    providers: Mapping[Channel, Provider]
    clock: Callable[[], datetime]
    rules: Rules = field(default_factory=Rules)

    def submit(self, command: OutboundCommand, *, hops: int = 0) -> Submitted:
        """Decide, render, record and dispatch ``command``; the same command again changes nothing."""
        now = self.clock()
        found = self.repository.card(command.customer_id)
        if found is None:
            raise NotFound(f"No customer {command.customer_id}.")
        profile, head = found
        if profile.merged_into is not None:  # the customer joined another profile: send to the survivor
            if hops >= MAX_MERGE_HOPS:
                raise PermanentError("The customer's merges form a chain too long to follow.")
            survivor = command.model_copy(update={"customer_id": profile.merged_into, "conversation_id": None})
            return self.submit(survivor, hops=hops + 1)
        stored = self.repository.outbound(command.customer_id, command.requested_at, command.entry_id)
        if stored is not None:
            redo = self._resume(command, stored, now)
            if redo is not None:
                return redo
        if stored is not None and stored.deferred_until is not None:
            # The timer fired: decide as of its instant at least, whatever this machine's clock says.
            now = max(now, stored.deferred_until)
        record, job, submitted = self._plan(command, profile, head, now)
        if stored is not None:  # a deferred message whose time came
            assert stored.deferred_until is not None
            if not self.repository.release_deferred(
                command.customer_id, command.requested_at, command.entry_id, stored.deferred_until, record
            ):
                return self._resumed_duplicate(command)
        elif self.repository.record_outbound(record) is not None:
            return self._resumed_duplicate(command)
        self._dispatch(command, job, submitted)
        return submitted

    # ---------------------------------------------------------------------------------------------------- replays

    def _resume(self, command: OutboundCommand, stored: StoredOutbound, now: datetime) -> Submitted | None:
        """Finish what an earlier delivery of this command may have left undone; None when it must be decided again."""

        def answer(outcome: Outcome, reason: str, detail: str, until: datetime | None = None) -> Submitted:
            return Submitted(command.message_id, outcome, stored.channel, reason, detail, until, duplicate=True)

        if stored.deferred_until is not None and stored.status == DeliveryStatus.QUEUED:
            woken = command.wake_at is not None and command.wake_at >= stored.deferred_until
            if woken or stored.deferred_until <= now + TIMER_SKEW:
                return None
            self._set_timer(command, stored.deferred_until)
            return answer(Outcome.DEFERRED, Reason.QUIET_HOURS, "still waiting", stored.deferred_until)
        if stored.status == DeliveryStatus.QUEUED and stored.send_job is not None:
            self.send_queues.send(SendJob.model_validate_json(stored.send_job))
            return answer(Outcome.QUEUED, "allowed", "already queued")
        if stored.status == DeliveryStatus.CANCELED:
            return answer(Outcome.CANCELED, stored.reason or "canceled", "canceled")
        return answer(Outcome.QUEUED, "allowed", f"already {stored.status}")

    def _set_timer(self, command: OutboundCommand, until: datetime) -> None:
        # One timer per (message, instant): a message deferred again (still quiet at 07:59) gets a new timer, never
        # the one that just fired and may still exist.
        body = command.model_copy(update={"wake_at": until}).model_dump_json()
        self.timers.schedule(f"{command.key}@{until.isoformat()}", until, body, group_id=command.customer_id)

    def _resumed_duplicate(self, command: OutboundCommand) -> Submitted:
        stored = self.repository.outbound(command.customer_id, command.requested_at, command.entry_id)
        if stored is None:  # pragma: no cover - the write that lost the race is readable by now
            raise PermanentError("An outbound message vanished while being recorded.")
        resumed = self._resume(command, stored, self.clock())
        if resumed is None:
            return Submitted(command.message_id, Outcome.DEFERRED, stored.channel, Reason.QUIET_HOURS, "deferred",
                             until=stored.deferred_until, duplicate=True)  # fmt: skip
        return resumed

    # ---------------------------------------------------------------------------------------------------- decide

    def _plan(
        self, command: OutboundCommand, profile: CustomerProfile, head: HeadState | None, now: datetime
    ) -> tuple[TimelineRecord, SendJob | None, Submitted]:
        options = candidates(command, profile, head, self.providers.keys(), now)
        if not options:
            channel = command.channel or next(iter(self.providers), Channel.WEBCHAT)
            reason = "no_channel"
            detail = "the customer has no address on any channel Hilo can send on" + (
                f" (excluded after failures: {', '.join(command.exclude_channels)})" if command.exclude_channels else ""
            )
            return self._canceled(command, profile, Candidate(channel, "unknown"), reason, detail, now)
        purpose = self._purpose(command)
        marketing_sent = (
            self.repository.marketing_sent_since(command.customer_id, now - timedelta(days=self.rules.frequency.days))
            if purpose == ConsentPurpose.MARKETING
            else 0
        )
        refusals: list[tuple[str, str]] = []  # (reason, detail) per candidate, in order
        for option in options:
            decision = decide(
                profile,
                option.channel,
                purpose,
                now,
                last_inbound_at=head.last_inbound_at if head is not None else {},
                quiet_hours=self.rules.quiet_hours,
                frequency=self.rules.frequency,
                marketing_sent=marketing_sent,
                default_time_zone=self.rules.default_time_zone,
                urgent=command.urgent,
                keyword_reply=command.keyword_reply,
            )
            if decision.action == Action.BLOCK:
                refusals.append((decision.reason, decision.detail))
                continue
            try:
                job = self._job(command, profile, option, purpose, decision.action == Action.NEEDS_TEMPLATE)
            except RenderFailed as error:  # a value missing, no variant for the channel: another may do
                refusals.append((RENDER_FAILED, error.message))
                continue
            except ValidationError as error:  # content the channel cannot carry (media alone by e-mail...)
                refusals.append((CONTENT_UNSUITABLE, _first_problem(error)))
                continue
            if job is None:  # outside WhatsApp's window with nothing approved to send
                refusals.append((decision.reason, decision.detail))
                continue
            if decision.action == Action.DEFER:
                assert decision.until is not None
                record = self._record(command, job, DeliveryStatus.QUEUED, now, deferred_until=decision.until,
                                      reason=decision.reason)  # fmt: skip
                submitted = Submitted(command.message_id, Outcome.DEFERRED, option.channel, decision.reason,
                                      decision.detail, until=decision.until)  # fmt: skip
                return record, None, submitted
            record = self._record(command, job, DeliveryStatus.QUEUED, now, send_job=job)
            return (
                record,
                job,
                Submitted(command.message_id, Outcome.QUEUED, option.channel, "allowed", decision.detail),
            )
        detail = "; ".join(f"{option.channel}: {why}" for option, (_, why) in zip(options, refusals, strict=True))
        return self._canceled(command, profile, options[0], refusals[0][0], detail, now)

    def _purpose(self, command: OutboundCommand) -> ConsentPurpose:
        if isinstance(command.content, TemplateContent):
            template = self.catalog.get(command.content.template_id)
            if template.purpose == ConsentPurpose.MARKETING:
                return ConsentPurpose.MARKETING  # a marketing template is marketing whatever the caller says
        return command.purpose

    def _job(
        self, command: OutboundCommand, profile: CustomerProfile, option: Candidate, purpose: ConsentPurpose,
        use_template: bool,
    ) -> SendJob | None:  # fmt: skip
        """Render the content for ``option``'s channel; None if WhatsApp needs a template and there is none."""
        fields: dict[str, Any] = {}
        content = command.content
        if isinstance(content, TemplateContent):
            from shared.outbound.rendering import RenderContext, render  # Jinja2 only when a template is sent

            context = RenderContext.of(profile, event=content.event, vars=content.vars,
                                       default_time_zone=self.rules.default_time_zone)  # fmt: skip
            rendered = render(self.catalog.get(content.template_id), option.channel, None, context)
            if use_template and rendered.whatsapp_template is None:
                return None
            if use_template or rendered.text is None:
                fields["whatsapp_template"] = rendered.whatsapp_template
                fields["text"] = rendered.text
            else:
                fields.update(text=rendered.text, subject=rendered.subject, html=rendered.html)
        else:
            if use_template:
                return None
            fields.update(text=content.text or None, media=_media(content), buttons=content.buttons,
                          subject=content.subject)  # fmt: skip
        if option.channel == Channel.EMAIL:
            fields.update(self._email_fields(command, fields.get("subject")))
        return SendJob(
            correlation_id=command.correlation_id,
            key=command.key,
            message_id=command.message_id,
            customer_id=command.customer_id,
            conversation_id=command.conversation_id,
            channel=option.channel,
            provider=self.providers[option.channel],
            to=option.address,
            sender=self.rules.email_from if option.channel == Channel.EMAIL else None,
            purpose=purpose,
            command=command,
            **{name: value for name, value in fields.items() if value not in (None, ())},
        )

    def _email_fields(self, command: OutboundCommand, subject: str | None) -> dict[str, Any]:
        thread = (
            self.repository.email_thread(command.customer_id, command.conversation_id)
            if command.conversation_id
            else None
        )
        if thread is None:
            return {"subject": subject or "Mensaje de nuestro equipo"}
        their_subject = thread.subject or ""
        reply_subject = their_subject if their_subject.lower().startswith("re:") else f"Re: {their_subject}".strip()
        return {
            "subject": subject or reply_subject,
            "in_reply_to": thread.message_id,
            "references": (*thread.references[-20:], thread.message_id),
        }

    # ---------------------------------------------------------------------------------------------------- records

    def _canceled(
        self, command: OutboundCommand, profile: CustomerProfile, option: Candidate, reason: str, detail: str,
        now: datetime,
    ) -> tuple[TimelineRecord, None, Submitted]:  # fmt: skip
        text = _preview(command)
        job = SendJob(
            correlation_id=command.correlation_id, key=command.key, message_id=command.message_id,
            customer_id=command.customer_id, conversation_id=command.conversation_id,
            channel=option.channel, provider=self.providers.get(option.channel, _default_provider(option.channel)),
            to=option.address, text=text, purpose=command.purpose, command=command,
            subject="-" if option.channel == Channel.EMAIL else None,
        )  # fmt: skip
        record = self._record(command, job, DeliveryStatus.CANCELED, now, reason=reason, detail=detail)
        return record, None, Submitted(command.message_id, Outcome.CANCELED, option.channel, str(reason), detail)

    def _record(
        self,
        command: OutboundCommand,
        job: SendJob,
        status: DeliveryStatus,
        now: datetime,
        *,
        send_job: SendJob | None = None,
        deferred_until: datetime | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> TimelineRecord:
        history: tuple[StatusUpdate, ...] = (StatusUpdate(status=DeliveryStatus.QUEUED, at=now),)
        if status == DeliveryStatus.CANCELED:
            history += (StatusUpdate(status=DeliveryStatus.CANCELED, at=now),)
        parts: tuple[TextPart | MediaPart, ...] = (
            *((TextPart(text=job.text),) if job.text else ()),
            *job.media,
        ) or (TextPart(text=_template_line(job)),)
        message = Message(
            id=command.message_id,
            direction=Direction.OUTBOUND,
            channel=job.channel,
            provider=job.provider,
            customer_id=command.customer_id,
            conversation_id=command.conversation_id,
            sender=Address(value=job.sender or "hilo"),
            recipient=Address(value=job.to),
            parts=parts,
            status_history=history,
        )
        entry = TimelineEntry(
            id=command.entry_id,
            customer_id=command.customer_id,
            conversation_id=command.conversation_id,
            occurred_at=command.requested_at,
            channel=job.channel,
            kind=TimelineKind.MESSAGE,
            summary=_summary(job),
            message_id=command.message_id,
            actor=command.actor,
        )
        extras: dict[str, Any] = {
            "purpose": str(job.purpose),
            "outbound_key": command.key,
            "outbound_command": command.model_dump_json(),
        }
        if send_job is not None:
            extras["send_job"] = send_job.model_dump_json()
        if isinstance(command.content, TemplateContent):
            extras["template_id"] = command.content.template_id
        if job.whatsapp_template is not None:
            extras["whatsapp_template"] = job.whatsapp_template.name
        if command.fallback_of is not None:
            extras["fallback_of"] = command.fallback_of
        if deferred_until is not None:
            extras["deferred_until"] = deferred_until
        if reason is not None:
            extras["outcome_reason"] = str(reason)
        if detail is not None:
            extras["outcome_detail"] = detail[:500]
        return TimelineRecord(
            entry=entry, message=message, inbound_kind=None, provider=str(job.provider), provider_message_id=None,
            received_at=now, extras=extras,
        )  # fmt: skip

    def _dispatch(self, command: OutboundCommand, job: SendJob | None, submitted: Submitted) -> None:
        if submitted.outcome == Outcome.DEFERRED:
            assert submitted.until is not None
            self._set_timer(command, submitted.until)
        elif job is not None:
            self.send_queues.send(job)


def _media(content: DirectContent) -> tuple[MediaPart, ...]:
    return tuple(part for part in content.parts if isinstance(part, MediaPart))


def _preview(command: OutboundCommand) -> str:
    if isinstance(command.content, DirectContent) and command.content.text:
        return command.content.text
    if isinstance(command.content, TemplateContent):
        return f"[{command.content.template_id}]"
    return "[media]"


def _template_line(job: SendJob) -> str:
    name = job.whatsapp_template.name if job.whatsapp_template else "media"
    return f"[{name}]"


def _summary(job: SendJob) -> str:
    text = job.subject if job.channel == Channel.EMAIL and job.subject else job.text or _template_line(job)
    line = " ".join(text.split())
    return line if len(line) <= 140 else line[:139] + "…"


def _default_provider(channel: Channel) -> Provider:
    from shared.models.common import PROVIDERS_BY_CHANNEL

    return sorted(PROVIDERS_BY_CHANNEL[channel])[0]


def _first_problem(error: ValidationError) -> str:
    problem = error.errors(include_url=False)[0]
    return str(problem.get("msg", "the content does not fit the channel")).removeprefix("Value error, ")
