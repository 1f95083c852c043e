"""Builds the outbound use cases from a function's environment: the one place their real adapters are wired.

Environment (template.yaml sets it): ``PROFILE_TABLE_NAME``; ``OUTBOUND_QUEUE_URL`` and ``OUTBOUND_QUEUE_ARN``
(fallbacks, and the target of quiet-hours timers); ``SEND_QUEUE_URL_<PROVIDER>`` for each provider's send queue;
``TIMER_GROUP_NAME``, ``TIMER_ROLE_ARN``, ``TIMER_DLQ_ARN``; ``EVENTS_QUEUE_URL`` and ``EVENT_BUS_NAME``;
``SENDER_PROVIDER`` for a sender function.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.models.common import Channel, Provider
from shared.models.outbound import SendJob, dedup_id
from shared.outbound.planning import Outbound, Rules
from shared.settings import Settings


def sendable_channels(settings: Settings) -> dict[Channel, Provider]:
    """The channels this deployment can send on, with their provider: those whose credentials are configured.

    Web chat needs nothing (Hilo is its provider); e-mail needs a sender address (SES is the account's).
    """
    channels: dict[Channel, Provider] = {}
    twilio = settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    meta_whatsapp = settings.meta_access_token is not None and settings.whatsapp_phone_number_id is not None
    if settings.whatsapp_provider == "meta" and meta_whatsapp:
        channels[Channel.WHATSAPP] = Provider.META
    elif settings.whatsapp_provider == "twilio" and twilio and settings.twilio_whatsapp_from:
        channels[Channel.WHATSAPP] = Provider.TWILIO
    if twilio and settings.twilio_sms_from:
        channels[Channel.SMS] = Provider.TWILIO
    if twilio and settings.twilio_rcs_from:
        channels[Channel.RCS] = Provider.TWILIO
    if settings.meta_page_access_token is not None:
        channels[Channel.MESSENGER] = Provider.META
        channels[Channel.INSTAGRAM] = Provider.META
    if settings.telegram_bot_token is not None:
        channels[Channel.TELEGRAM] = Provider.TELEGRAM
    if settings.email_from:
        channels[Channel.EMAIL] = Provider.SES
    channels[Channel.WEBCHAT] = Provider.HILO
    return channels


def send_queue_env(provider: Provider) -> str:
    """The environment variable holding ``provider``'s send queue URL."""
    return f"SEND_QUEUE_URL_{provider.value.upper()}"


class SendQueues:
    """Each provider's FIFO send queue: group = customer (their messages leave in order), dedup = the command key."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from shared.adapters.command_queue import CommandQueue

        self._queues = {
            provider: CommandQueue(env[send_queue_env(provider)])
            for provider in Provider
            if env.get(send_queue_env(provider))
        }

    def send(self, job: SendJob) -> None:
        queue = self._queues.get(job.provider)
        if queue is None:
            from shared.errors import RetryableError

            raise RetryableError(f"No send queue for provider {job.provider} ({send_queue_env(job.provider)} unset).")
        queue.send(job, group_id=job.customer_id, dedup_id=dedup_id(job.key))


class OutboundTimers:
    """The planner's timers: a deferred command comes back to OutboundQueue at its time."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from shared.adapters.timers import Timers

        self._timers = Timers(env["TIMER_GROUP_NAME"], env["TIMER_ROLE_ARN"], env.get("TIMER_DLQ_ARN"))
        self._target = env["OUTBOUND_QUEUE_ARN"]

    def schedule(self, key: str, at: datetime, body: str, *, group_id: str | None = None) -> None:
        self._timers.schedule(f"outbound:{key}", at, self._target, body, group_id=group_id)


def outbound_from_environment(env: Mapping[str, str], settings: Settings) -> Outbound:
    """``Outbound`` on ProfileTable, the send queues and the timers."""
    from shared.adapters.outbound_store import OutboundStore
    from shared.clock import now
    from shared.outbound.catalog import ShippedCatalog

    return Outbound(
        repository=OutboundStore(env["PROFILE_TABLE_NAME"]),
        send_queues=SendQueues(env),
        timers=OutboundTimers(env),
        catalog=ShippedCatalog(),
        providers=sendable_channels(settings),
        clock=now,
        rules=Rules(email_from=settings.email_from),
    )


def sender_from_environment(env: Mapping[str, str], settings: Settings) -> Any:
    """The ``Sender`` for ``SENDER_PROVIDER``."""
    from shared.adapters.event_publisher import EventPublisher
    from shared.adapters.outbound_queue import OutboundQueue
    from shared.adapters.outbound_store import OutboundStore
    from shared.adapters.senders import client_for
    from shared.clock import now
    from shared.outbound.sending import Sender

    provider = Provider(env["SENDER_PROVIDER"])
    from shared.delivery_status import failure_event

    if provider == Provider.HILO:
        from shared.adapters.chat_store import ChatStore
        from shared.adapters.webchat_sender import WebchatSender

        client: Any = WebchatSender(ChatStore(env["PROFILE_TABLE_NAME"]), now)
    else:
        client = client_for(provider, settings)
    return Sender(
        store=OutboundStore(env["PROFILE_TABLE_NAME"]),
        client=client,
        outbound=OutboundQueue(env["OUTBOUND_QUEUE_URL"]),
        events=EventPublisher(env["EVENTS_QUEUE_URL"], env["EVENT_BUS_NAME"]),
        failure_event=failure_event,
        clock=now,
    )
