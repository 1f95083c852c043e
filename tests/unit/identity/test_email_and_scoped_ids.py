"""E-mail addresses and channel-scoped ids through the normaliser."""

from __future__ import annotations

import pytest

from shared.identity import Normaliser, normalise_email
from shared.models import IdentityKind, IdentityNormaliser


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ana.Gómez@Ejemplo.COM.co ", "ana.gómez@ejemplo.com.co"),
        ("ANA+PEDIDOS@GMAIL.COM", "ana+pedidos@gmail.com"),
        ("jose@correo.café.co", "jose@correo.café.co"),
        ("Jose\u0301@ejemplo.co", "josé@ejemplo.co"),  # decomposed accent composed (NFC)
        ("o'brien@ejemplo.com.ar", "o'brien@ejemplo.com.ar"),
        ("a@b-c.io", "a@b-c.io"),
    ],
)
def test_emails_are_trimmed_composed_and_lower_cased(raw: str, expected: str) -> None:
    # Given / When / Then
    assert normalise_email(raw) == expected
    assert normalise_email(expected) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ana",
        "ana@",
        "@ejemplo.co",
        "ana@localhost",
        "ana@ejemplo",
        "ana@@ejemplo.co",
        "ana gómez@ejemplo.co",
        "Ana <ana@ejemplo.co>",
        "mailto:ana@ejemplo.co",
        ".ana@ejemplo.co",
        "ana.@ejemplo.co",
        "an..a@ejemplo.co",
        "ana@ejemplo..co",
        "ana@-ejemplo.co",
        "ana@ejemplo-.co",
        "ana@ejem_plo.co",
        "ana@192.168.0.1",
        "a" * 65 + "@ejemplo.co",
        "ana@" + "e" * 250 + ".co",
    ],
)
def test_obviously_broken_emails_are_rejected(raw: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match=r"e-mail address|before '@'|domain"):
        normalise_email(raw)


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (IdentityKind.EMAIL, " Ana@Ejemplo.CO ", "ana@ejemplo.co"),
        (IdentityKind.MESSENGER, " 6254378123456789 ", "6254378123456789"),
        (IdentityKind.INSTAGRAM, "17841400000000000", "17841400000000000"),
        (IdentityKind.TELEGRAM, " 7102345678 ", "7102345678"),
        (IdentityKind.TELEGRAM, "-1001234567890", "-1001234567890"),
        (IdentityKind.WEBCHAT, " visitor-7f3a ", "visitor-7f3a"),
        (IdentityKind.CRM_ID, "SF-0031x00000Abc", "SF-0031x00000Abc"),
    ],
)
def test_the_normaliser_handles_every_kind(kind: IdentityKind, raw: str, expected: str) -> None:
    # Given the normaliser, used through the port
    normaliser: IdentityNormaliser = Normaliser()

    # When / Then
    assert normaliser.normalise(kind, raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "problem"),
    [
        (IdentityKind.MESSENGER, "abc", "numeric page-scoped id"),
        (IdentityKind.TELEGRAM, "@camir", "numeric chat id"),
        (IdentityKind.WEBCHAT, "", "1-128 characters"),
    ],
)
def test_channel_scoped_ids_keep_their_shape_checks(kind: IdentityKind, raw: str, problem: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match=problem):
        Normaliser().normalise(kind, raw)


@pytest.mark.parametrize("region", ["", "COL", "1A", "co "])
def test_regions_are_two_letter_codes(region: str) -> None:
    # Given / When / Then: lower case and spaces are forgiven, other shapes are not
    if region.strip().upper() == "CO":
        assert Normaliser(default_region=region).default_region == "CO"
        return
    with pytest.raises(ValueError, match="ISO 3166-1"):
        Normaliser(default_region=region)
    with pytest.raises(ValueError, match="ISO 3166-1"):
        Normaliser().normalise(IdentityKind.PHONE, "300 123 4567", region=region)
