"""Identity values: stored normalised, checked by kind, national IDs scoped by country and document type."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.identity import Normaliser
from shared.models import CustomerProfile, Identity, IdentityKind, IdentityNormaliser
from tests.unit.models.factories import T0, profile_data
from tests.unit.models.helpers import error_summary


def identity(**fields: Any) -> Identity:
    return Identity.model_validate({"first_seen": T0} | fields)


def test_email_is_stored_trimmed_and_lower_cased() -> None:
    # Given / When
    email = identity(kind="email", value="  Ana.Gómez@Ejemplo.COM.co ")

    # Then
    assert email.value == "ana.gómez@ejemplo.com.co"
    assert email == identity(kind="email", value="ana.gómez@ejemplo.com.co")


@pytest.mark.parametrize("kind", ["phone", "whatsapp"])
@pytest.mark.parametrize("value", ["3001234567", "+57 300 123 4567", "+057300123456", "+1234567", "+1234567890123456"])
def test_phones_must_already_be_e164(kind: str, value: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        identity(kind=kind, value=value)

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ("value",)
    assert "must be E.164" in message


@pytest.mark.parametrize("value", ["+12345678", "+573001234567", "+123456789012345"])
def test_e164_phones_of_8_to_15_digits_are_accepted(value: str) -> None:
    # Given / When / Then
    assert identity(kind="phone", value=value).value == value


def test_national_id_needs_country_and_document_type() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        identity(kind="national_id", value="1020304050")

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ()
    assert "needs country and document_type" in message


def test_country_and_document_type_belong_to_national_ids_only() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        identity(kind="email", value="a@b.co", country="CO")

    # Then
    assert "national_id identities only" in error_summary(excinfo)[0][1]


def test_national_id_lookup_value_includes_country_and_type() -> None:
    # Given
    cedula = identity(kind="national_id", value="1020304050", country="CO", document_type="CC")
    nit = identity(kind="national_id", value="1020304050", country="CO", document_type="NIT")

    # When / Then: same digits, different documents
    assert cedula.lookup_value == "CO:CC:1020304050"
    assert cedula.lookup_value != nit.lookup_value


def test_whatsapp_and_phone_share_a_lookup_key() -> None:
    # Given the same number seen on WhatsApp and by SMS
    whatsapp = identity(kind="whatsapp", value="+573001234567")
    phone = identity(kind="phone", value="+573001234567")

    # When / Then: one pointer, so two simultaneous first messages race for the same key
    assert (whatsapp.lookup_kind, whatsapp.lookup_value) == (phone.lookup_kind, phone.lookup_value)
    assert whatsapp.kind != phone.kind


@pytest.mark.parametrize(
    ("kind", "value", "fragment"),
    [
        ("national_id", "1.020.304.050", "without dots"),
        ("messenger", "abc", "numeric page-scoped id"),
        ("telegram", "12a", "numeric chat id"),
        ("email", "ana@localhost", "name@domain.tld"),
        ("crm_id", "a\x00b", "without control characters"),
    ],
)
def test_malformed_values_are_rejected_by_kind(kind: str, value: str, fragment: str) -> None:
    # Given
    extra = {"country": "CO", "document_type": "CC"} if kind == "national_id" else {}

    # When
    with pytest.raises(ValidationError) as excinfo:
        identity(kind=kind, value=value, **extra)

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ("value",)
    assert fragment in message


def test_unknown_kind_reports_the_kind_only() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        identity(kind="fax", value="+573001234567")

    # Then
    assert [location for location, _ in error_summary(excinfo)] == [("kind",)]


def test_identity_is_frozen() -> None:
    # Given
    email = identity(kind="email", value="a@b.co")

    # When / Then
    with pytest.raises(ValidationError, match="frozen"):
        email.value = "c@d.co"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (IdentityKind.WHATSAPP, "573001234567", "+573001234567"),
        (IdentityKind.PHONE, "+57 (300) 123-4567", "+573001234567"),
        (IdentityKind.PHONE, "0057 300 123 4567", "+573001234567"),
        (IdentityKind.PHONE, "300 123 4567", "+573001234567"),
        (IdentityKind.EMAIL, " Ana@Ejemplo.CO ", "ana@ejemplo.co"),
        (IdentityKind.NATIONAL_ID, "1.020.304.050", "1020304050"),
        (IdentityKind.TELEGRAM, " 123456789 ", "123456789"),
    ],
)
def test_normaliser_output_is_accepted_by_the_model(kind: IdentityKind, raw: str, expected: str) -> None:
    # Given the normaliser used through the port, with HILO_DEFAULT_REGION=CO
    normaliser: IdentityNormaliser = Normaliser(default_region="CO")

    # When
    value = normaliser.normalise(kind, raw, region="CO")

    # Then
    assert value == expected
    extra = {"country": "CO", "document_type": "CC"} if kind == IdentityKind.NATIONAL_ID else {}
    assert identity(kind=kind, value=value, **extra).value == expected


@pytest.mark.parametrize(
    ("kind", "value", "lookup_value"),
    [
        ("whatsapp", "+5215512345678", "+525512345678"),  # Meta's MX wa_id
        ("phone", "+525512345678", "+525512345678"),  # Twilio SMS
        ("whatsapp", "+5491123456789", "+541123456789"),  # AR mobile with its 9
        ("phone", "+541123456789", "+541123456789"),
        ("whatsapp", "+551187654321", "+5511987654321"),  # BR wa_id of an old account
        ("phone", "+551132654321", "+551132654321"),  # BR landline
        ("phone", "+573001234567", "+573001234567"),
    ],
)
def test_phone_lookup_value_is_the_match_key(kind: str, value: str, lookup_value: str) -> None:
    # Given / When
    phone = identity(kind=kind, value=value)

    # Then: the value is kept as received; the pointer is keyed on the match key
    assert phone.value == value
    assert (phone.lookup_kind, phone.lookup_value) == (IdentityKind.PHONE, lookup_value)


def test_a_profile_cannot_hold_two_forms_of_one_number() -> None:
    # Given the Mexican wa_id form and the SMS form of one mobile, both as WhatsApp identities
    forms = [identity(kind="whatsapp", value="+5215512345678"), identity(kind="whatsapp", value="+525512345678")]

    # When / Then
    with pytest.raises(ValidationError, match="identities must be unique"):
        CustomerProfile.model_validate(profile_data(identities=forms))


@pytest.mark.parametrize(("value", "expected"), [("123", "123"), ("A&B9307148T4", "A&B9307148T4")])
def test_national_ids_of_three_characters_and_rfcs_with_ampersand_fit(value: str, expected: str) -> None:
    # Given an old Colombian cédula and a company RFC / When / Then
    assert identity(kind="national_id", value=value, country="CO", document_type="CC").value == expected
