"""Finding a customer: every way an agent can type an identifier lands on the key ingest stored."""

from __future__ import annotations

import pytest

from shared.customers import lookup_key
from shared.errors import InvalidInput, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.models.identity import IdentityKind

CO = Normaliser("CO")


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
