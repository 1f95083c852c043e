"""Properties: normalising is idempotent and fails only with ValueError; the phone match key is idempotent and
makes the Latin-American mobile forms one."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shared.identity import (
    DOCUMENT_TYPES,
    Normaliser,
    identify_national_id,
    normalise_national_id,
    phone_match_key,
)
from shared.models import IdentityKind, check_identity_value
from tests.unit.identity import checkdigits

REGIONS = ("CO", "MX", "VE", "AR", "CL", "BR", "PE", "EC", "UY", "US")
NORMALISERS = {region: Normaliser(default_region=region) for region in REGIONS}
SETTINGS = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)

_phoneish = st.from_regex(r"(\+|00)?[0-9 ().\-/]{0,22}", fullmatch=True)
_idish = st.from_regex(r"[VEJ]?[0-9A-Zk .\-/]{0,22}", fullmatch=True)
_e164 = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)
_digits = st.text(alphabet="0123456789", min_size=1)


def _check_normalise(kind: IdentityKind, raw: str, region: str) -> None:
    normaliser = NORMALISERS[region]
    try:
        value = normaliser.normalise(kind, raw)
    except ValueError:
        return
    assert normaliser.normalise(kind, value) == value
    assert check_identity_value(kind, value) == value


@SETTINGS
@given(kind=st.sampled_from(IdentityKind), raw=st.text(max_size=60), region=st.sampled_from(REGIONS))
def test_arbitrary_text_is_normalised_idempotently_or_refused_with_value_error(
    kind: IdentityKind, raw: str, region: str
) -> None:
    _check_normalise(kind, raw, region)


@SETTINGS
@given(
    kind=st.sampled_from([IdentityKind.PHONE, IdentityKind.WHATSAPP]),
    raw=_phoneish,
    region=st.sampled_from(REGIONS),
)
@example(kind=IdentityKind.PHONE, raw="011 15-2345-6789", region="AR")
@example(kind=IdentityKind.WHATSAPP, raw="5215512345678", region="CO")
@example(kind=IdentityKind.WHATSAPP, raw="551187654321", region="CO")
def test_phone_shaped_text_is_normalised_idempotently_or_refused(kind: IdentityKind, raw: str, region: str) -> None:
    _check_normalise(kind, raw, region)


@SETTINGS
@given(raw=_idish, region=st.sampled_from(REGIONS))
@example(raw="V-12.345.678", region="CO")
@example(raw="76.086.428-5", region="MX")
def test_id_shaped_text_is_normalised_idempotently_or_refused(raw: str, region: str) -> None:
    _check_normalise(IdentityKind.NATIONAL_ID, raw, region)


@SETTINGS
@given(
    e164=st.sampled_from(
        ["+573001234567", "+525512345678", "+5491123456789", "+5511987654321", "+584121234567", "+56987654321"]
    ),
    separators=st.lists(st.sampled_from(["", " ", "-", ".", " - ", "(", ")", "/"]), min_size=15, max_size=15),
    prefix=st.sampled_from(["+", "00", "+ "]),
)
def test_punctuation_and_international_prefix_do_not_change_the_number(
    e164: str, separators: list[str], prefix: str
) -> None:
    # Given the digits of a valid number with punctuation sprinkled between them
    digits = e164[1:]
    raw = prefix + "".join(digit + separator for digit, separator in zip(digits, separators, strict=False))

    # When / Then
    assert NORMALISERS["CO"].normalise(IdentityKind.PHONE, raw) == e164


@SETTINGS
@given(e164=_e164)
def test_the_match_key_is_idempotent_and_e164(e164: str) -> None:
    key = phone_match_key(e164)
    assert phone_match_key(key) == key
    assert check_identity_value(IdentityKind.PHONE, key) == key


@SETTINGS
@given(number=st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_mexican_and_argentinian_mobile_markers_make_one_key(number: str) -> None:
    assert phone_match_key(f"+521{number}") == phone_match_key(f"+52{number}")
    assert phone_match_key(f"+549{number}") == phone_match_key(f"+54{number}")
    assert phone_match_key(f"+52{number}") == f"+52{number}"
    assert phone_match_key(f"+54{number}") == f"+54{number}"


@SETTINGS
@given(area=st.from_regex(r"[1-9]{2}", fullmatch=True), line=st.from_regex(r"[0-9]{7}", fullmatch=True))
def test_brazilian_mobiles_gain_the_ninth_digit_and_landlines_stay(area: str, line: str) -> None:
    for first in "6789":
        assert phone_match_key(f"+55{area}{first}{line}") == phone_match_key(f"+55{area}9{first}{line}")
    for first in "2345":
        assert phone_match_key(f"+55{area}{first}{line}") == f"+55{area}{first}{line}"


@SETTINGS
@given(body=st.integers(min_value=1_000_000, max_value=99_999_999).map(str))
def test_generated_ruts_round_trip(body: str) -> None:
    check = checkdigits.cl_rut(body)
    formatted = f"{int(body):,}".replace(",", ".") + "-" + check.lower()
    document = normalise_national_id("CL", "RUT", formatted)
    assert document.value == body + check
    assert normalise_national_id("CL", "RUT", document.value) == document


@SETTINGS
@given(body=st.from_regex(r"[0-9]{9}", fullmatch=True))
def test_generated_cpfs_round_trip(body: str) -> None:
    assume(len(set(body)) > 1)
    check = checkdigits.br_cpf(body)
    document = normalise_national_id("BR", "CPF", f"{body[:3]}.{body[3:6]}.{body[6:]}-{check}")
    assert document.value == body + check
    assert normalise_national_id("BR", "CPF", document.value) == document


@SETTINGS
@given(body=st.integers(min_value=1_000_000, max_value=999_999_999_999_999).map(str))
def test_generated_nits_round_trip(body: str) -> None:
    check = checkdigits.co_nit(body)
    document = normalise_national_id("CO", "NIT", f"{body}-{check}")
    assert document.value == body + check


@pytest.mark.parametrize("country", ["CO", "VE", "MX", "AR", "CL", "BR", "PE", "EC"])
@SETTINGS
@given(
    raw=st.text(max_size=30),
    document_type=st.sampled_from([*sorted({t for ts in DOCUMENT_TYPES.values() for t in ts}), "V"]),
)
def test_validators_fail_only_with_value_error(country: str, raw: str, document_type: str) -> None:
    try:
        document = normalise_national_id(country, document_type, raw)
    except ValueError:
        return
    assert normalise_national_id(document.country, document.document_type, document.value) == document


@SETTINGS
@given(raw=_idish, region=st.sampled_from(REGIONS))
@example(raw="12ABC34501DE35", region="BR")
@example(raw="0213.123.432-1", region="CO")
def test_guessed_documents_are_fixed_points_of_validation(raw: str, region: str) -> None:
    try:
        document = identify_national_id(raw, region)
    except ValueError:
        return
    assert normalise_national_id(document.country, document.document_type, document.value) == document
    if document.country == region:
        assert identify_national_id(document.value, region).value == document.value
