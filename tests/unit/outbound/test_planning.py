"""The outbound use case on moto's DynamoDB: channel choice, the send rules, rendering, the timeline and idempotency.

Customers are made the way they are in production, by ingesting their messages; the send queues and timers are
recorded in memory (they are ports; their adapters have tests of their own).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.dynamodb import from_item
from shared.adapters.outbound_store import OutboundStore
from shared.models.common import Channel, Provider
from shared.models.customer import ConsentPurpose
from shared.models.identity import Identity, IdentityKind
from shared.models.outbound import OutboundCommand, SendJob
from shared.models.timeline import Actor, ActorKind
from shared.outbound.catalog import shipped_catalog
from shared.outbound.planning import Outbound, Outcome
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, envelope, unique_phone

ALL: dict[Channel, Provider] = {
    Channel.WHATSAPP: Provider.META,
    Channel.SMS: Provider.TWILIO,
    Channel.EMAIL: Provider.SES,
    Channel.TELEGRAM: Provider.TELEGRAM,
    Channel.WEBCHAT: Provider.HILO,
}
AGENT = Actor(kind=ActorKind.AGENT, id="agente-7")


class Jobs:
    def __init__(self) -> None:
        self.sent: list[SendJob] = []

    def send(self, job: SendJob) -> None:
        self.sent.append(job)


class Timers:
    def __init__(self) -> None:
        self.scheduled: dict[str, tuple[datetime, str]] = {}

    def schedule(self, key: str, at: datetime, body: str, *, group_id: str | None = None) -> None:
        assert group_id is not None
        self.scheduled[key] = (at, body)


@pytest.fixture
def outbound(aws: Aws) -> tuple[Outbound, Jobs, Timers]:
    jobs, timers = Jobs(), Timers()
    planner = Outbound(
        repository=OutboundStore(aws.table, aws.dynamodb),
        send_queues=jobs,
        timers=timers,
        catalog=shipped_catalog(),
        providers=ALL,
        clock=aws.clock,
    )
    return planner, jobs, timers


def command(customer_id: str, *, key: str = "k-1", at: datetime = T0, **fields: Any) -> OutboundCommand:
    values: dict[str, Any] = {
        "correlation_id": "corr-1",
        "key": key,
        "customer_id": customer_id,
        "actor": AGENT,
        "requested_at": at,
        "content": {"type": "direct", "parts": [{"type": "text", "text": "Ya revisamos tu caso, ¿te sirve mañana?"}]},
    }
    values.update(fields)
    return OutboundCommand.model_validate(values)


def stored(aws: Aws, customer_id: str, cmd: OutboundCommand) -> dict[str, Any]:
    from shared.adapters.profile_store import timeline_sk

    item = aws.dynamodb.get_item(TableName=aws.table, Key={"pk": {"S": f"CUST#{customer_id}"},
                                 "sk": {"S": timeline_sk(cmd.requested_at, cmd.entry_id)}})["Item"]  # fmt: skip
    return from_item(item)


def whatsapp_customer(aws: Aws, at: datetime = T0, text: str = "Hola, el televisor llegó roto") -> tuple[str, str]:
    phone = unique_phone()
    ingested = aws.ingest()(envelope(sender=phone, at=at, text=text))
    return ingested.customer_id, phone


def test_a_reply_goes_where_the_customer_last_wrote_and_is_on_the_timeline_as_queued(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, phone = whatsapp_customer(aws)
    aws.clock.advance(timedelta(minutes=3))
    cmd = command(customer_id, conversation_id=_conversation(aws, customer_id), at=aws.clock())

    submitted = planner.submit(cmd)

    assert (submitted.outcome, submitted.channel) == (Outcome.QUEUED, Channel.WHATSAPP)
    [job] = jobs.sent
    assert (job.to, job.provider, job.text) == (phone, Provider.META, "Ya revisamos tu caso, ¿te sirve mañana?")
    item = stored(aws, customer_id, cmd)
    assert (item["status"], item["direction"], item["channel"]) == ("queued", "outbound", "whatsapp")
    assert item["actor"] == {"kind": "agent", "id": "agente-7"}
    assert item["conversation_id"] == cmd.conversation_id


def test_the_same_command_twice_is_one_message(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    cmd = command(customer_id, channel="whatsapp", at=aws.clock())

    first, second = planner.submit(cmd), planner.submit(cmd)

    assert first.message_id == second.message_id
    assert second.duplicate
    assert jobs.sent[0] == jobs.sent[1]  # the stored job again: the FIFO dedup and the sender's check make it one
    timeline = [i for i in aws.items("TIMELINE") if i["direction"]["S"] == "outbound"]
    assert len(timeline) == 1


def test_after_baja_marketing_is_blocked_and_transactional_still_goes(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, phone = whatsapp_customer(aws)
    aws.ingest()(envelope(sender=phone, at=T0 + timedelta(minutes=1), text="BAJA"))
    aws.clock.advance(timedelta(minutes=5))
    promo = command(customer_id, key="promo", at=aws.clock(), purpose="marketing",
                    content={"type": "template", "template_id": "producto_disponible",
                             "event": {"product_name": "Camisa", "size": "M", "url": "https://t.co/x"}})  # fmt: skip
    notice = command(customer_id, key="aviso", at=aws.clock(), channel="whatsapp")

    blocked, sent = planner.submit(promo), planner.submit(notice)

    assert blocked.outcome == Outcome.CANCELED
    assert blocked.reason in ("opted_out", "no_marketing_opt_in")
    assert stored(aws, customer_id, promo)["status"] == "canceled"
    assert sent.outcome == Outcome.QUEUED
    assert [job.key for job in jobs.sent] == ["aviso"]


def test_a_marketing_template_is_marketing_whatever_the_caller_says(aws, outbound) -> None:
    planner, _, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    promo = command(customer_id, key="promo", at=aws.clock(), purpose="transactional",
                    content={"type": "template", "template_id": "producto_disponible",
                             "event": {"product_name": "Camisa", "size": "M", "url": "https://t.co/x"}})  # fmt: skip

    assert planner.submit(promo).reason == "no_marketing_opt_in"


def test_quiet_hours_defer_to_the_local_morning_and_the_timer_sends_it_then(aws, outbound) -> None:
    planner, jobs, timers = outbound
    customer_id, _ = whatsapp_customer(aws)
    night = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)  # 22:30 in Bogotá, a day after the customer wrote
    aws.clock.at = night
    cmd = command(customer_id, key="recordatorio", at=night, channel="sms",
                  content={"type": "template", "template_id": "cita_confirmada",
                           "vars": {"starts_at": "2026-03-04T15:00:00Z", "store": "Unicentro"}})  # fmt: skip

    deferred = planner.submit(cmd)

    morning = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 08:00 in Bogotá
    assert (deferred.outcome, deferred.until) == (Outcome.DEFERRED, morning)
    [(at, body)] = timers.scheduled.values()
    assert at == morning
    woken = OutboundCommand.model_validate_json(body)
    assert woken == cmd.model_copy(update={"wake_at": morning})
    assert jobs.sent == []
    assert stored(aws, customer_id, cmd)["status"] == "queued"

    aws.clock.at = morning - timedelta(minutes=5)  # the timer puts the command back (on a clock well behind)
    sent = planner.submit(woken)

    assert (sent.outcome, sent.channel) == (Outcome.QUEUED, Channel.SMS)
    [job] = jobs.sent
    assert job.text is not None
    assert "Unicentro" in job.text
    item = stored(aws, customer_id, cmd)
    assert item["status"] == "queued"
    assert "deferred_until" not in item


def test_outside_the_whatsapp_window_a_template_goes_as_the_approved_template(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    aws.clock.advance(timedelta(days=2))
    cmd = command(customer_id, at=aws.clock(), channel="whatsapp",
                  content={"type": "template", "template_id": "cita_confirmada",
                           "vars": {"starts_at": "2026-03-06T15:00:00Z", "store": "Unicentro"}})  # fmt: skip

    assert planner.submit(cmd).outcome == Outcome.QUEUED

    [job] = jobs.sent
    assert job.whatsapp_template is not None
    assert (job.whatsapp_template.name, job.whatsapp_template.parameters[2]) == ("cita_confirmada", "Unicentro")


def test_outside_the_window_free_text_moves_to_the_next_channel_or_is_refused_when_whatsapp_was_asked(
    aws, outbound
) -> None:
    planner, jobs, _ = outbound
    customer_id, phone = whatsapp_customer(aws)
    aws.clock.advance(timedelta(days=2))

    reply = planner.submit(
        command(customer_id, key="r", at=aws.clock(), conversation_id=_conversation(aws, customer_id))
    )
    explicit = planner.submit(command(customer_id, key="e", at=aws.clock(), channel="whatsapp"))

    assert (reply.outcome, reply.channel) == (Outcome.QUEUED, Channel.SMS)
    assert jobs.sent[0].to == phone
    assert (explicit.outcome, explicit.reason) == (Outcome.CANCELED, "whatsapp_window_closed")


def test_a_fallback_never_picks_an_excluded_channel_and_says_when_nothing_is_left(aws, outbound) -> None:
    planner, _, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    cmd = command(customer_id, channel="whatsapp", at=aws.clock())
    fallback = cmd.fallback(Channel.WHATSAPP, aws.clock())

    assert planner.submit(fallback).channel == Channel.SMS
    last = planner.submit(fallback.fallback(Channel.SMS, aws.clock()))
    assert (last.outcome, last.reason) == (Outcome.CANCELED, "no_channel")


def test_an_e_mail_reply_threads_under_the_customers_message(aws, outbound) -> None:
    planner, jobs, _ = outbound
    ingested = aws.ingest()(envelope(channel="email", provider="ses", sender="ana.perez@example.com",
                                     provider_message_id="<CAF=abc@mail.gmail.com>", subject="Factura perdida",
                                     references=("<first@mail.gmail.com>",), text="Perdí la factura"))  # fmt: skip
    cmd = command(ingested.customer_id, at=aws.clock(), conversation_id=ingested.conversation_id)

    assert planner.submit(cmd).channel == Channel.EMAIL

    [job] = jobs.sent
    assert (job.subject, job.in_reply_to) == ("Re: Factura perdida", "<CAF=abc@mail.gmail.com>")
    assert job.references == ("<first@mail.gmail.com>", "<CAF=abc@mail.gmail.com>")


def test_the_best_channel_follows_the_intent(aws, outbound) -> None:
    planner, _, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    store = OutboundStore(aws.table, aws.dynamodb)
    email = Identity(kind=IdentityKind.EMAIL, value="luis@example.com", first_seen=T0)
    assert store.link_identity(customer_id, email, "agent:agente-7")

    detail = planner.submit(command(customer_id, key="d", at=aws.clock(), intent="detail"))
    confirmation = planner.submit(command(customer_id, key="c", at=aws.clock(), intent="confirmation"))
    plain = planner.submit(command(customer_id, key="p", at=aws.clock()))

    assert (detail.channel, confirmation.channel, plain.channel) == (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP)


def test_an_unknown_template_is_refused_with_the_known_ones(aws, outbound) -> None:
    planner, _, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    cmd = command(customer_id, at=aws.clock(), content={"type": "template", "template_id": "no_existe"})

    with pytest.raises(Exception, match=r"no_existe.*cita_confirmada"):
        planner.submit(cmd)


def _conversation(aws: Aws, customer_id: str) -> str:
    card = OutboundStore(aws.table, aws.dynamodb).card(customer_id)
    assert card is not None
    assert card[1] is not None
    return card[1].conversation_id


def test_marketing_counts_toward_the_cap(aws, outbound) -> None:
    planner, _, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    store = OutboundStore(aws.table, aws.dynamodb)
    from shared.models.customer import Consent, ConsentStatus

    store.apply_consents(customer_id, [Consent(channel="whatsapp", purpose=ConsentPurpose.MARKETING,
                                              status=ConsentStatus.OPTED_IN, source="web_form", at=T0)])  # fmt: skip
    event = {"product_name": "Camisa", "size": "M", "url": "https://t.co/x"}
    outcomes = [
        planner.submit(
            command(
                customer_id,
                key=f"promo-{n}",
                at=aws.clock() + timedelta(seconds=n),
                channel="whatsapp",
                purpose="marketing",
                content={"type": "template", "template_id": "producto_disponible", "event": event},
            )
        )
        for n in range(4)
    ]

    assert [o.outcome for o in outcomes] == [Outcome.QUEUED] * 3 + [Outcome.CANCELED]
    assert outcomes[-1].reason == "frequency_cap"


def test_a_template_missing_a_value_is_canceled_with_the_value_named_not_parked(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    cmd = command(customer_id, at=aws.clock(), channel="whatsapp",
                  content={"type": "template", "template_id": "cita_confirmada",
                           "vars": {"store": "Unicentro"}})  # fmt: skip

    submitted = planner.submit(cmd)

    assert (submitted.outcome, submitted.reason) == (Outcome.CANCELED, "render_failed")
    assert "vars.starts_at" in submitted.detail
    assert jobs.sent == []
    assert stored(aws, customer_id, cmd)["outcome_reason"] == "render_failed"


def test_content_a_channel_cannot_carry_moves_to_one_that_can(aws, outbound) -> None:
    planner, jobs, _ = outbound
    customer_id, _ = whatsapp_customer(aws)
    store = OutboundStore(aws.table, aws.dynamodb)
    assert store.link_identity(customer_id, Identity(kind=IdentityKind.EMAIL, value="eva@example.com", first_seen=T0),
                               "agent:agente-7")  # fmt: skip
    invoice = {"type": "direct", "parts": [{"type": "media", "url": "https://tienda.example/f/4411.pdf",
                                            "mime_type": "application/pdf", "filename": "factura.pdf"}]}  # fmt: skip

    by_email = planner.submit(command(customer_id, key="pdf-1", at=aws.clock(), intent="detail", content=invoice))
    only_email = planner.submit(command(customer_id, key="pdf-2", at=aws.clock(), channel="email", content=invoice))

    assert by_email.channel == Channel.WHATSAPP  # e-mail first for details, but an e-mail needs a text body
    assert (only_email.outcome, only_email.reason) == (Outcome.CANCELED, "content_unsuitable")
    assert [job.channel for job in jobs.sent] == [Channel.WHATSAPP]
