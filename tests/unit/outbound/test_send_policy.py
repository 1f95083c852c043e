"""The send decision: quiet hours (DST-correct), WhatsApp's 24-hour window, the marketing frequency cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.models.common import Channel, IdPrefix, new_id
from shared.models.customer import Consent, ConsentPurpose, ConsentStatus, CustomerProfile
from shared.outbound.policy import Action, Decision, FrequencyCap, QuietHours, Reason, decide, quiet_until

MARKETING, TRANSACTIONAL = ConsentPurpose.MARKETING, ConsentPurpose.TRANSACTIONAL
CREATED = datetime(2020, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def customer(time_zone: str | None = None, *marketing_on: Channel) -> CustomerProfile:
    consents = tuple(
        Consent(channel=c, purpose=MARKETING, status=ConsentStatus.OPTED_IN, source="web_form", at=CREATED)
        for c in marketing_on
    )
    return CustomerProfile(
        id=new_id(IdPrefix.CUSTOMER, at=CREATED),
        time_zone=time_zone,
        consents=consents,
        created_at=CREATED,
        updated_at=CREATED,
    )


# --- quiet hours ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "until"),
    [
        # Santiago springs forward at midnight (-04 → -03): 22:00 Sat → 08:00 Sun is 9 hours, not 10.
        ("America/Santiago", "2024-09-08T02:00", "2024-09-08T11:00"),
        # Santiago falls back at midnight (-03 → -04): 22:00 Sat → 08:00 Sun is 11 hours.
        ("America/Santiago", "2024-04-07T01:00", "2024-04-07T12:00"),
        # Mexico City's last spring-forward (02:00 CST → 03:00 CDT), 23:00 the evening before.
        ("America/Mexico_City", "2022-04-03T05:00", "2022-04-03T13:00"),
        # and its last fall-back (02:00 CDT → 01:00 CST), 23:00 the evening before.
        ("America/Mexico_City", "2022-10-30T04:00", "2022-10-30T14:00"),
        # After midnight, the window ends the same morning.
        ("America/Bogota", "2024-05-07T08:30", "2024-05-07T13:00"),
    ],
)
def test_quiet_hours_defer_to_the_exact_local_morning_across_a_dst_change(zone: str, now: str, until: str) -> None:
    # Given a customer in that zone who opted in to SMS promotions, and it is night there
    profile = customer(zone, Channel.SMS)
    # When a promotion is decided
    decision = decide(profile, Channel.SMS, MARKETING, utc(now), last_inbound_at={})
    # Then it waits until 08:00 local, an exact UTC instant
    assert (decision.action, decision.reason) == (Action.DEFER, Reason.QUIET_HOURS)
    assert decision.until == utc(until)
    assert decision.until is not None
    assert decision.until.astimezone(ZoneInfo(zone)).time() == time(8, 0)


def test_a_window_ending_inside_a_spring_forward_gap_ends_when_the_clocks_jump() -> None:
    # Santiago's clocks go from 00:00 straight to 01:00 on 2024-09-08: 00:30 never happens that night
    quiet = QuietHours(start=time(22, 0), end=time(0, 30))
    until = quiet_until(utc("2024-09-08T02:30"), quiet, ZoneInfo("America/Santiago"))  # 22:30 local
    assert until == utc("2024-09-08T04:00")  # 01:00 -03, the first instant the clock reads 00:30 or later


def test_a_window_ending_in_the_repeated_hour_of_a_fall_back_ends_at_its_first_occurrence() -> None:
    # Santiago repeats 23:00-24:00 on 2024-04-06 (-03, then -04)
    quiet = QuietHours(start=time(22, 0), end=time(23, 30))
    zone = ZoneInfo("America/Santiago")
    assert quiet_until(utc("2024-04-07T01:10"), quiet, zone) == utc("2024-04-07T02:30")  # 22:10 -03
    # already in the repeated hour (23:10 -04, after the first 23:30): the second 23:30
    assert quiet_until(utc("2024-04-07T03:10"), quiet, zone) == utc("2024-04-07T03:30")


@pytest.mark.parametrize(
    ("local", "quiet"),
    [("20:59", False), ("21:00", True), ("23:59", True), ("00:00", True), ("07:59", True), ("08:00", False)],
)
def test_the_quiet_window_starts_inclusive_and_ends_exclusive(local: str, quiet: bool) -> None:
    bogota = ZoneInfo("America/Bogota")
    now = datetime.combine(date(2024, 5, 7), time.fromisoformat(local), bogota)
    assert (quiet_until(now, QuietHours(), bogota) is not None) is quiet


def test_the_tenant_zone_applies_when_the_customer_has_none() -> None:
    now = utc("2024-05-07T03:00")  # 22:00 in Bogotá, 00:00 in Buenos Aires
    profile = customer(None, Channel.SMS)
    bogota = decide(profile, Channel.SMS, MARKETING, now, last_inbound_at={})
    assert bogota.until == utc("2024-05-07T13:00")
    buenos_aires = decide(
        profile, Channel.SMS, MARKETING, now, last_inbound_at={}, default_time_zone="America/Argentina/Buenos_Aires"
    )
    assert buenos_aires.until == utc("2024-05-07T11:00")


def test_a_custom_window_and_no_window_at_all() -> None:
    now = utc("2024-05-07T03:00")  # 22:00 in Bogotá
    profile = customer("America/Bogota", Channel.SMS)
    late = decide(profile, Channel.SMS, MARKETING, now, last_inbound_at={}, quiet_hours=QuietHours(time(23), time(7)))
    assert late.action == Action.SEND
    off = decide(profile, Channel.SMS, MARKETING, now, last_inbound_at={}, quiet_hours=None)
    assert off.action == Action.SEND


@pytest.mark.parametrize(
    ("purpose", "urgent", "last_inbound", "channel", "expected"),
    [
        (TRANSACTIONAL, False, None, Channel.SMS, Action.DEFER),  # an appointment reminder waits for morning
        (TRANSACTIONAL, True, None, Channel.SMS, Action.SEND),  # a fraud alert does not
        (MARKETING, True, None, Channel.SMS, Action.DEFER),  # marketing is never urgent
        (TRANSACTIONAL, False, timedelta(minutes=5), Channel.SMS, Action.SEND),  # answering the customer
        (TRANSACTIONAL, False, timedelta(hours=2), Channel.SMS, Action.DEFER),  # they wrote hours ago
        (MARKETING, False, timedelta(minutes=5), Channel.SMS, Action.DEFER),  # a promotion is no answer
        (MARKETING, False, None, Channel.EMAIL, Action.SEND),  # an e-mail does not ring
        (MARKETING, False, None, Channel.WEBCHAT, Action.SEND),
    ],
)
def test_what_quiet_hours_hold(
    purpose: ConsentPurpose, urgent: bool, last_inbound: timedelta | None, channel: Channel, expected: Action
) -> None:
    now = utc("2024-05-07T04:00")  # 23:00 in Bogotá
    profile = customer("America/Bogota", channel)
    inbound = {} if last_inbound is None else {str(channel): now - last_inbound}
    assert decide(profile, channel, purpose, now, last_inbound_at=inbound, urgent=urgent).action == expected


# --- WhatsApp's 24-hour window -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since_inbound", "template", "expected"),
    [
        (timedelta(hours=23, minutes=59), False, Action.SEND),
        (timedelta(hours=24) - timedelta(microseconds=1), False, Action.SEND),
        (timedelta(hours=24), False, Action.NEEDS_TEMPLATE),
        (timedelta(hours=24, minutes=1), False, Action.NEEDS_TEMPLATE),
        (None, False, Action.NEEDS_TEMPLATE),  # never wrote on WhatsApp
        (timedelta(hours=24, minutes=1), True, Action.SEND),  # an approved template may go
        (None, True, Action.SEND),
    ],
)
def test_whatsapp_free_form_only_inside_the_24_hour_window(
    since_inbound: timedelta | None, template: bool, expected: Action
) -> None:
    now = utc("2024-05-07T17:00")  # 12:00 in Bogotá
    inbound = {} if since_inbound is None else {"whatsapp": now - since_inbound}
    decision = decide(
        customer("America/Bogota"), Channel.WHATSAPP, TRANSACTIONAL, now, last_inbound_at=inbound, template=template
    )
    assert decision.action == expected
    if expected == Action.NEEDS_TEMPLATE:
        assert decision.reason == Reason.WHATSAPP_WINDOW_CLOSED


def test_the_whatsapp_window_reads_whatsapp_only() -> None:
    now = utc("2024-05-07T17:00")
    inbound = {"sms": now - timedelta(minutes=1), "whatsapp": now - timedelta(days=2)}
    decision = decide(customer("America/Bogota"), Channel.WHATSAPP, TRANSACTIONAL, now, last_inbound_at=inbound)
    assert decision.action == Action.NEEDS_TEMPLATE
    assert decide(customer(), Channel.SMS, TRANSACTIONAL, now, last_inbound_at={}).action == Action.SEND


# --- frequency cap --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "expected"), [(0, Action.SEND), (2, Action.SEND), (3, Action.BLOCK), (9, Action.BLOCK)]
)
def test_marketing_is_capped_per_customer(sent: int, expected: Action) -> None:
    now = utc("2024-05-07T17:00")
    profile = customer("America/Bogota", Channel.EMAIL)
    decision = decide(profile, Channel.EMAIL, MARKETING, now, last_inbound_at={}, marketing_sent=sent)
    assert decision.action == expected
    if expected == Action.BLOCK:
        assert decision.reason == Reason.FREQUENCY_CAP


def test_the_cap_is_a_parameter_and_transactional_is_never_capped() -> None:
    now = utc("2024-05-07T17:00")
    profile = customer("America/Bogota", Channel.EMAIL)
    one_a_day = FrequencyCap(limit=1, days=1)
    capped = decide(profile, Channel.EMAIL, MARKETING, now, last_inbound_at={}, marketing_sent=1, frequency=one_a_day)
    assert capped.action == Action.BLOCK
    assert "cap of 1" in capped.detail
    plenty = decide(profile, Channel.EMAIL, TRANSACTIONAL, now, last_inbound_at={}, marketing_sent=50)
    assert plenty.action == Action.SEND


# --- consent comes first, and the value itself --------------------------------------------------------------------


def test_marketing_needs_an_explicit_opt_in_for_that_channel() -> None:
    now = utc("2024-05-07T17:00")
    profile = customer("America/Bogota", Channel.EMAIL)
    decision = decide(profile, Channel.SMS, MARKETING, now, last_inbound_at={})
    assert (decision.action, decision.reason) == (Action.BLOCK, Reason.NO_MARKETING_OPT_IN)
    assert decide(profile, Channel.SMS, TRANSACTIONAL, now, last_inbound_at={}).action == Action.SEND


def test_a_block_outranks_a_deferral() -> None:
    night = utc("2024-05-07T04:00")  # 23:00 in Bogotá: a promotion without consent is blocked, not deferred
    decision = decide(customer("America/Bogota"), Channel.SMS, MARKETING, night, last_inbound_at={})
    assert decision.action == Action.BLOCK


def test_a_deferral_outranks_the_whatsapp_window() -> None:
    # At night with the window closed: wait for morning first, then decide again (template or not)
    night = utc("2024-05-07T04:00")
    decision = decide(customer("America/Bogota"), Channel.WHATSAPP, TRANSACTIONAL, night, last_inbound_at={})
    assert decision.action == Action.DEFER


def test_a_decision_is_well_formed() -> None:
    with pytest.raises(ValueError, match="until"):
        Decision(Action.DEFER, Reason.QUIET_HOURS, "x")
    with pytest.raises(ValueError, match="until"):
        Decision(Action.SEND, Reason.ALLOWED, "x", until=utc("2024-05-07T04:00"))
    with pytest.raises(ValueError, match="naive"):
        decide(customer(), Channel.SMS, TRANSACTIONAL, datetime(2024, 5, 7, 12), last_inbound_at={})
    with pytest.raises(ValueError, match="start different"):
        QuietHours(time(8), time(8))
    assert Decision(Action.SEND, Reason.ALLOWED, "x").may_send
