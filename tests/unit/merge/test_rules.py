"""The merge rules: who survives, how profiles and current conversations combine, what an unmerge restores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ingest.ports import HeadState
from shared.merging import ProfileFields, combined_head, combined_profile, restored_profile, survivor_first
from shared.models.common import Channel
from shared.models.conversation import ConversationStatus
from shared.models.customer import Consent, CustomerProfile

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)


def profile(customer_id: str, at: datetime = T0, **fields: object) -> CustomerProfile:
    return CustomerProfile.model_validate({"id": customer_id, "created_at": at, "updated_at": at, **fields})


def consent(channel: str, status: str, at: datetime) -> Consent:
    return Consent.model_validate(
        {"channel": channel, "purpose": "marketing", "status": status, "source": "keyword", "at": at}
    )


def head(conversation: str, status: str, last: datetime, *channels: Channel) -> HeadState:
    return HeadState(
        conversation_id=conversation,
        status=ConversationStatus(status),
        opened_at=last - timedelta(minutes=5),
        last_message_at=last,
        last_channel=channels[-1],
        channels=frozenset(channels),
        last_inbound_at={str(channel): last for channel in channels},
    )


OLD, NEW = "cus_01HZZZZZZZZZZZZZZZZZZZZZZ0", "cus_01HZZZZZZZZZZZZZZZZZZZZZZ1"


def test_the_older_profile_survives_whichever_is_named_first() -> None:
    older, newer = profile(NEW, T0), profile(OLD, T0 + timedelta(days=1))
    assert survivor_first(newer, older) == (older, newer)
    assert survivor_first(older, newer) == (older, newer)
    same_time = profile(NEW, T0)
    assert survivor_first(same_time, profile(OLD, T0))[0].id == OLD


def test_the_survivor_keeps_its_values_and_gains_what_only_the_other_knew() -> None:
    survivor = profile(OLD, display_name="Ana", attributes={"tier": "silver"},
                       consents=[consent("sms", "opted_in", T0)])  # fmt: skip
    absorbed = profile(NEW, time_zone="America/Bogota", display_name="Ana María",
                       attributes={"tier": "gold", "crm": "C-1"},
                       consents=[consent("sms", "opted_out", T0 + timedelta(hours=1)),
                                 consent("email", "opted_in", T0)])  # fmt: skip
    combined = combined_profile(survivor, absorbed, T0 + timedelta(days=1))
    assert combined.display_name == "Ana"
    assert combined.time_zone == "America/Bogota"
    assert combined.attributes == {"tier": "silver", "crm": "C-1"}
    # The most recent choice per channel and purpose wins: the later opt-out stays an opt-out
    assert {(c.channel, c.status) for c in combined.consents} == {
        (Channel.SMS, "opted_out"),
        (Channel.EMAIL, "opted_in"),
    }


def test_restoring_undoes_the_merge_but_keeps_later_changes() -> None:
    survivor = profile(OLD, attributes={"tier": "silver"}, consents=[consent("sms", "opted_in", T0)])
    absorbed = profile(NEW, display_name="Ana", attributes={"crm": "C-1", "city": "Cali"},
                       consents=[consent("sms", "opted_out", T0 + timedelta(hours=1))])  # fmt: skip
    merged = combined_profile(survivor, absorbed, T0 + timedelta(days=1))
    before, after = ProfileFields.of(survivor), ProfileFields.of(merged)
    # Meanwhile an agent changed the city
    current = merged.model_copy(update={"attributes": {**merged.attributes, "city": "Medellín"}})
    restored = restored_profile(current, before, after, T0 + timedelta(days=2))
    assert restored.display_name is None
    assert restored.attributes == {"tier": "silver", "city": "Medellín"}
    assert [(c.channel, c.status) for c in restored.consents] == [(Channel.SMS, "opted_in")]


def test_two_current_conversations_become_the_survivors_one_case() -> None:
    survivor = head("conv_s", "open", T0, Channel.WHATSAPP)
    absorbed = head("conv_a", "open", T0 + timedelta(hours=1), Channel.VOICE)
    plan = combined_head(survivor, absorbed, WINDOW)
    assert plan.head is not None
    assert (plan.folded_conversation_id, plan.into_conversation_id) == ("conv_a", "conv_s")
    assert plan.head.conversation_id == "conv_s"
    assert plan.head.channels == {Channel.WHATSAPP, Channel.VOICE}
    assert (plan.head.last_message_at, plan.head.last_channel) == (T0 + timedelta(hours=1), Channel.VOICE)


def test_conversations_further_apart_than_the_window_stay_two() -> None:
    survivor = head("conv_s", "open", T0, Channel.WHATSAPP)
    absorbed = head("conv_a", "open", T0 + WINDOW + timedelta(minutes=1), Channel.VOICE)
    plan = combined_head(survivor, absorbed, WINDOW)
    assert plan.folded_conversation_id is None
    assert plan.head is survivor


def test_the_current_conversation_becomes_the_head_when_only_the_absorbed_has_one() -> None:
    survivor = head("conv_s", "closed", T0, Channel.EMAIL)
    absorbed = head("conv_a", "pending", T0 - timedelta(days=1), Channel.SMS)
    assert combined_head(survivor, absorbed, WINDOW).head is absorbed
    closed = head("conv_b", "closed", T0 + timedelta(days=1), Channel.SMS)
    assert combined_head(survivor, closed, WINDOW).head is closed
    assert combined_head(None, absorbed, WINDOW).head is absorbed
    assert combined_head(survivor, None, WINDOW).head is survivor
