"""Customer profiles: defaults, time zones, uniqueness of identities and consents, round-trips."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.models import Channel, ConsentPurpose, ConsentStatus, CustomerProfile, IdentityKind, new_id
from tests.unit.models.factories import CUSTOMER_ID, T0, profile_data
from tests.unit.models.helpers import error_summary


def test_profile_round_trips_through_json_with_spanish_text() -> None:
    # Given
    profile = CustomerProfile.model_validate(profile_data())

    # When
    restored = CustomerProfile.model_validate_json(profile.model_dump_json())

    # Then
    assert restored == profile
    assert restored.display_name == "María José Núñez"


def test_defaults_are_spanish_locale_unknown_zone_and_version_one() -> None:
    # Given / When
    profile = CustomerProfile(id=CUSTOMER_ID, created_at=T0, updated_at=T0)

    # Then
    assert (profile.locale, profile.time_zone, profile.version) == ("es", None, 1)
    assert profile.attributes == {}
    assert profile.identities == ()


@pytest.mark.parametrize(("given", "stored"), [("es_co", "es-CO"), ("ES-419", "es-419"), ("pt-br", "pt-BR")])
def test_locale_is_normalised(given: str, stored: str) -> None:
    # Given / When / Then
    assert CustomerProfile.model_validate(profile_data(locale=given)).locale == stored


@pytest.mark.parametrize("zone", ["America/Bogota", "America/Argentina/Buenos_Aires", "America/Mexico_City", "UTC"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    # Given / When / Then
    assert CustomerProfile.model_validate(profile_data(time_zone=zone)).time_zone == zone


@pytest.mark.parametrize("zone", ["America", "Bogota", "GMT-5 ", "../../etc/passwd", "/etc/localtime", "localtime", ""])
def test_unknown_time_zones_are_rejected(zone: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        CustomerProfile.model_validate(profile_data(time_zone=zone))

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ("time_zone",)
    assert "America/Bogota" in message


def test_duplicate_identities_are_rejected() -> None:
    # Given the same e-mail written twice with different case
    identities = [
        {"kind": "email", "value": "ana@ejemplo.co", "first_seen": T0},
        {"kind": "email", "value": "ANA@ejemplo.co", "first_seen": T0},
    ]

    # When
    with pytest.raises(ValidationError) as excinfo:
        CustomerProfile.model_validate(profile_data(identities=identities))

    # Then
    assert error_summary(excinfo) == [((), "Value error, identities must be unique by kind and value")]


def test_same_number_may_be_phone_and_whatsapp() -> None:
    # Given
    identities = [
        {"kind": "phone", "value": "+573001234567", "first_seen": T0},
        {"kind": "whatsapp", "value": "+573001234567", "first_seen": T0},
    ]

    # When
    profile = CustomerProfile.model_validate(profile_data(identities=identities))

    # Then
    assert [identity.value for identity in profile.identities_of(IdentityKind.WHATSAPP)] == ["+573001234567"]


def test_one_consent_per_channel_and_purpose() -> None:
    # Given
    consent = {"channel": "sms", "purpose": "marketing", "source": "keyword:BAJA", "at": T0}
    consents = [consent | {"status": "opted_in"}, consent | {"status": "opted_out"}]

    # When
    with pytest.raises(ValidationError) as excinfo:
        CustomerProfile.model_validate(profile_data(consents=consents))

    # Then
    assert "one per (channel, purpose)" in error_summary(excinfo)[0][1]


def test_consent_for_finds_the_pair_or_none() -> None:
    # Given
    profile = CustomerProfile.model_validate(profile_data())

    # When
    whatsapp = profile.consent_for(Channel.WHATSAPP, ConsentPurpose.MARKETING)
    sms = profile.consent_for(Channel.SMS, ConsentPurpose.MARKETING)

    # Then
    assert whatsapp is not None
    assert whatsapp.status == ConsentStatus.OPTED_IN
    assert sms is None


@pytest.mark.parametrize(
    ("overrides", "location", "fragment"),
    [
        ({"updated_at": "2024-05-01T15:29:59Z"}, (), "updated_at is before created_at"),
        ({"merged_into": CUSTOMER_ID}, (), "merged into itself"),
        ({"version": 0}, ("version",), "greater than or equal to 1"),
        ({"attributes": {"1bad": "x"}}, ("attributes", "1bad", "[key]"), "should match pattern"),
        ({"attributes": {"tags": ["a", "b"]}}, ("attributes", "tags"), "valid string"),
        ({"created_at": "2024-05-01T15:30:00"}, ("created_at",), "naive datetime"),
        ({"nickname": "Majo"}, ("nickname",), "Extra inputs are not permitted"),
    ],
)
def test_invalid_profiles_are_rejected(overrides: dict[str, Any], location: tuple[str, ...], fragment: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        CustomerProfile.model_validate(profile_data(**overrides))

    # Then: an error at that location (or inside it, for union members) says what is wrong
    errors = error_summary(excinfo)
    assert any(_within(loc, location) and fragment in message for loc, message in errors), errors


def _within(actual: tuple[int | str, ...], expected: tuple[str, ...]) -> bool:
    # Model-level errors sit at (); field errors may sit deeper, inside a union member pydantic names itself.
    return actual == expected if not expected else actual[: len(expected)] == expected


def test_merged_profile_points_to_the_survivor() -> None:
    # Given / When
    survivor = new_id("cus")
    profile = CustomerProfile.model_validate(profile_data(merged_into=survivor))

    # Then
    assert profile.is_merged
    assert profile.merged_into == survivor
