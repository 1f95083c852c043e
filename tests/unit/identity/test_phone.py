"""Phones: E.164 by the numbering plans, and one match key for the MX, AR and BR forms of one mobile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.identity import Normaliser, normalise_phone, phone_match_key
from shared.models import Identity, IdentityKind

T0 = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
PHONE, WHATSAPP = IdentityKind.PHONE, IdentityKind.WHATSAPP


def lookup(kind: IdentityKind, raw: str, region: str | None = None) -> tuple[str, str, str]:
    """Normalise ``raw`` as a caller would, build the Identity, and return (stored value, lookup kind, lookup value)."""
    value = Normaliser(default_region="CO").normalise(kind, raw, region=region)
    identity = Identity(kind=kind, value=value, first_seen=T0)
    return identity.value, identity.lookup_kind, identity.lookup_value


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("300 123 4567", "CO", "+573001234567"),
        ("(300) 123-4567", "CO", "+573001234567"),
        ("300.123.4567", "CO", "+573001234567"),
        ("+57 300 123 4567", "MX", "+573001234567"),
        ("0057 300 123 4567", "CO", "+573001234567"),  # Colombia's own IDDs are 005/007/009, not 00
        ("00 57 300 123 4567", "AR", "+573001234567"),
        ("573001234567", "CO", "+573001234567"),
        ("601 234 5678", "CO", "+576012345678"),  # Bogotá landline
        ("0412-123.45.67", "VE", "+584121234567"),
        ("+58 412 1234567", None, "+584121234567"),
        ("9 8765 4321", "CL", "+56987654321"),
        ("987 654 321", "PE", "+51987654321"),
        ("099 123 4567", "EC", "+593991234567"),
        ("(11) 98765-4321", "BR", "+5511987654321"),
        ("015 11 98765-4321", "BR", "+5511987654321"),  # with a long-distance carrier code
    ],
)
def test_phones_are_stored_in_e164(raw: str, region: str | None, expected: str) -> None:
    # Given a number as a customer, a provider or a clerk writes it / When
    value = Normaliser(default_region="CO").normalise(PHONE, raw, region=region)

    # Then
    assert value == expected


def test_the_default_region_reads_numbers_without_country_code() -> None:
    # Given HILO_DEFAULT_REGION=AR
    normaliser = Normaliser(default_region="ar")

    # When / Then: a per-call region wins over the default
    assert normaliser.normalise(PHONE, "011 4321-1234") == "+541143211234"
    assert normaliser.normalise(PHONE, "300 123 4567", region="CO") == "+573001234567"
    assert Normaliser().default_region == "CO"


# One Mexican mobile as every channel sends it. Twilio SMS: +52; WhatsApp wa_id (Meta or Twilio): 521…;
# a Telegram contact card: +52 1 …; a clerk in Mexico City: 55 1234 5678, or with the old 044 trunk prefix.
MX_MOBILE = [
    (PHONE, "+525512345678", None),
    (PHONE, "+5215512345678", None),
    (WHATSAPP, "5215512345678", None),
    (WHATSAPP, "+5215512345678", None),
    (PHONE, "+52 1 55 1234 5678", None),
    (PHONE, "5215512345678", "CO"),  # a contact exported without its '+'
    (PHONE, "55 1234 5678", "MX"),
    (PHONE, "1 55 1234 5678", "MX"),
    (PHONE, "044 55 1234 5678", "MX"),
    (PHONE, "045 55 1234 5678", "MX"),
    (PHONE, "01 55 1234 5678", "MX"),
]
# One Argentinian mobile (Buenos Aires, area 11): WhatsApp and carriers with the 9; typed with the national
# 15 mobile prefix, with or without the trunk 0; typed internationally without the 9.
AR_MOBILE = [
    (WHATSAPP, "5491123456789", None),
    (PHONE, "+5491123456789", None),
    (PHONE, "+54 9 11 2345-6789", None),
    (PHONE, "011 15-2345-6789", "AR"),
    (PHONE, "11 15 2345 6789", "AR"),
    (PHONE, "+54 11 15 2345-6789", None),
    (PHONE, "+54 11 2345-6789", None),
]
# One Brazilian mobile (São Paulo, area 11): carriers and new WhatsApp accounts with the 9th digit; old
# WhatsApp accounts (registered before 2016) without it.
BR_MOBILE = [
    (PHONE, "+5511987654321", None),
    (WHATSAPP, "5511987654321", None),
    (WHATSAPP, "551187654321", None),
    (PHONE, "+55 11 8765-4321", None),
    (PHONE, "(11) 98765-4321", "BR"),
    (PHONE, "011 98765-4321", "BR"),
]


@pytest.mark.parametrize(
    ("forms", "key"),
    [(MX_MOBILE, "+525512345678"), (AR_MOBILE, "+541123456789"), (BR_MOBILE, "+5511987654321")],
    ids=["MX", "AR", "BR"],
)
def test_every_channels_form_of_one_mobile_has_one_lookup_key(
    forms: list[tuple[IdentityKind, str, str | None]], key: str
) -> None:
    # Given one customer's mobile as SMS, WhatsApp, Telegram and a clerk send it / When
    lookups = {lookup(kind, raw, region)[1:] for kind, raw, region in forms}

    # Then: one identity pointer, ID#phone#<key>
    assert lookups == {(PHONE, key)}


def test_stored_values_are_the_numbers_to_reply_to() -> None:
    # Given / When / Then: MX and BR are stored in today's numbering plan, AR mobiles keep their 9
    assert lookup(WHATSAPP, "5215512345678")[0] == "+525512345678"
    assert lookup(WHATSAPP, "551187654321")[0] == "+5511987654321"
    assert lookup(PHONE, "011 15-2345-6789", "AR")[0] == "+5491123456789"
    assert lookup(PHONE, "+54 11 2345-6789")[0] == "+541123456789"


@pytest.mark.parametrize(
    "e164",
    [
        "+541143211234",  # Buenos Aires landline
        "+543514211234",  # Córdoba landline
        "+551132654321",  # São Paulo landline (8 digits starting 2-5)
        "+552125554321",  # Rio de Janeiro landline
        "+558007654321",  # Brazilian 0800, area-like "80" then 0
        "+5511912345678",  # Brazilian mobile in a 9-digit range that never had an 8-digit form
        "+525551234567",  # Mexico City number (no fixed/mobile distinction since 2019)
        "+576012345678",  # Bogotá landline
        "+573001234567",
        "+56987654321",
        "+12025550123",
    ],
)
def test_landlines_and_other_numbers_are_their_own_key(e164: str) -> None:
    # Given / When / Then
    assert phone_match_key(e164) == e164


@pytest.mark.parametrize(
    ("e164", "key"),
    [
        ("+5215512345678", "+525512345678"),
        ("+5493514211234", "+543514211234"),
        ("+551187654321", "+5511987654321"),
        ("+558199887766", "+5581999887766"),
    ],
)
def test_legacy_mobile_forms_map_to_the_key(e164: str, key: str) -> None:
    # Given / When / Then
    assert phone_match_key(e164) == key
    assert phone_match_key(key) == key


def test_match_key_needs_e164() -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match=r"E\.164"):
        phone_match_key("5215512345678")


def test_whatsapp_and_phone_identities_of_one_number_share_the_pointer() -> None:
    # Given the same Mexican customer on WhatsApp (wa_id) and SMS (Twilio)
    whatsapp = Identity(kind=WHATSAPP, value="+5215512345678", first_seen=T0)
    sms = Identity(kind=PHONE, value="+525512345678", first_seen=T0)

    # When / Then
    assert (whatsapp.lookup_kind, whatsapp.lookup_value) == (sms.lookup_kind, sms.lookup_value)


@pytest.mark.parametrize(
    ("raw", "region", "problem"),
    [
        ("", "CO", "use digits"),
        ("   ", "CO", "use digits"),
        ("()", "CO", "no digits"),
        ("call 300 123 4567", "CO", "use digits"),
        ("300 123 4567 ext 5", "CO", "use digits"),
        ("+57 300 123 4567#", "CO", "use digits"),
        ("whatsapp:+573001234567", "CO", "use digits"),
        ("+57+300", "CO", "use digits"),
        ("300 123", "CO", "too short"),
        ("+57 300 123 4567 890", "CO", "too long"),
        ("+999 300 123 4567", "CO", "country code"),
        ("+0573001234567", "CO", "country code"),
        ("+57 200 123 4567", "CO", "no such range"),
        ("15-2345-6789", "AR", "no such range"),  # a 15 mobile without its area code
        ("300 123 4567", None, "no country code"),
        ("1" * 65, "CO", "use digits"),
    ],
)
def test_invalid_phones_are_rejected_naming_the_problem(raw: str, region: str | None, problem: str) -> None:
    # Given / When
    with pytest.raises(ValueError, match=problem) as excinfo:
        normalise_phone(raw, region)

    # Then: the message names the problem, not the number
    assert "123" not in str(excinfo.value)


def test_a_wa_id_in_a_range_the_plan_does_not_know_is_still_accepted() -> None:
    # Given a wa_id WhatsApp verified, in a Colombian range our copy of the plan rejects as a phone
    with pytest.raises(ValueError, match="no such range"):
        normalise_phone("+57 200 123 4567", None)

    # When / Then: the provider verified it, so only its length is checked
    assert Normaliser().normalise(WHATSAPP, "572001234567") == "+572001234567"
    with pytest.raises(ValueError, match="too short"):
        Normaliser().normalise(WHATSAPP, "57200")


def test_a_trusted_number_that_e164_cannot_carry_is_refused() -> None:
    # Given a "wa_id" whose national part is only zeros: phonenumbers keeps them as leading zeros, which do not
    # survive a round trip through E.164 (found by the idempotence property)
    # When / Then
    with pytest.raises(ValueError, match="no such range"):
        Normaliser().normalise(WHATSAPP, "3100000000")
