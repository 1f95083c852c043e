"""Finding a customer: every way an agent can type an identifier lands on the key ingest stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.customers import given_identity, lookup_key
from shared.errors import InvalidInput, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.models.common import Channel
from shared.models.identity import IdentityKind

CO = Normaliser("CO")
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"phone": "300 123 4567"}, (IdentityKind.PHONE, "+573001234567")),  # national format, default region
        ({"phone": "+57 (300) 123-4567"}, (IdentityKind.PHONE, "+573001234567")),
        ({"phone": "+52 1 55 1234 5678"}, (IdentityKind.PHONE, "+525512345678")),  # MX legacy mobile form
        ({"identity": "whatsapp:5215512345678"}, (IdentityKind.PHONE, "+525512345678")),  # wa_id shares the key
        ({"identity": "telegram:912345678"}, (IdentityKind.TELEGRAM, "912345678")),
        ({"identity": "crm_id:C-1001"}, (IdentityKind.CRM_ID, "C-1001")),
        ({"email": "  Ana.Maria@Correo.CO "}, (IdentityKind.EMAIL, "ana.maria@correo.co")),
        ({"national_id": "1.020.304.050"}, (IdentityKind.NATIONAL_ID, "CO:CC:1020304050")),  # a clerk's cédula
        (
            {"national_id": "12.345.678-5", "country": "CL", "document_type": "RUT"},
            (IdentityKind.NATIONAL_ID, "CL:RUT:123456785"),
        ),
    ],
)
def test_each_way_of_writing_an_identifier_finds_the_stored_key(
    query: dict[str, str], expected: tuple[IdentityKind, str]
) -> None:
    assert lookup_key(query, CO) == expected


@pytest.mark.parametrize(
    "query",
    [
        {"phone": "12"},
        {"email": "nadie"},
        {"identity": "fax:1"},
        {"identity": "telegram"},
        {"identity": "national_id:1"},
        {"national_id": "12.345.678-0", "country": "CL", "document_type": "RUT"},
    ],
)
def test_an_invalid_identifier_is_a_422_naming_the_parameter(query: dict[str, str]) -> None:
    with pytest.raises(Unprocessable) as raised:
        lookup_key(query, CO)
    assert raised.value.details == [{"field": next(iter(query))}]


@pytest.mark.parametrize("query", [{}, {"phone": "+573001234567", "email": "a@b.co"}, {"phone": ""}])
def test_none_or_several_identifiers_is_a_400(query: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        lookup_key(query, CO)


@pytest.mark.parametrize(
    ("given", "kind", "value", "scope"),
    [
        ({"phone": "300 123 4567"}, IdentityKind.PHONE, "+573001234567", (None, None)),
        ({"identity": "whatsapp:573001234567"}, IdentityKind.WHATSAPP, "+573001234567", (None, None)),
        ({"email": "Ana@Correo.CO"}, IdentityKind.EMAIL, "ana@correo.co", (None, None)),
        ({"national_id": "1.020.304.050"}, IdentityKind.NATIONAL_ID, "1020304050", ("CO", "CC")),
        ({"identity": "crm_id:C-1001"}, IdentityKind.CRM_ID, "C-1001", (None, None)),
    ],
)
def test_the_finders_parser_gives_the_identity_a_link_stores(
    given: dict[str, str], kind: IdentityKind, value: str, scope: tuple[str | None, str | None]
) -> None:
    # Given the forms an agent types, When parsed for a link
    identity = given_identity(given, CO, first_seen=T0, source_channel=Channel.IN_STORE)
    # Then the identity is the stored form, unverified, and finds what lookup_key finds
    assert (identity.kind, identity.value, (identity.country, identity.document_type)) == (kind, value, scope)
    assert (identity.first_seen, identity.source_channel, identity.verified) == (T0, Channel.IN_STORE, False)
    assert (identity.lookup_kind, identity.lookup_value) == lookup_key(given, CO)


def test_an_invalid_identifier_error_never_repeats_the_value() -> None:
    with pytest.raises(Unprocessable) as raised:
        given_identity({"identity": "crm_id:" + "\x01secret"}, CO)
    assert "secret" not in raised.value.message
    assert raised.value.details == [{"field": "identity"}]
