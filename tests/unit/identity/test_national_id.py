"""National IDs: validated with their check digits where they have one, stored compact, guessed conservatively."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.identity import DOCUMENT_TYPES, NationalId, Normaliser, identify_national_id, normalise_national_id
from shared.models import Identity, IdentityKind
from tests.unit.identity import checkdigits

T0 = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)

# Documented examples from python-stdnum's docs, and numbers made with tests/unit/identity/checkdigits.py.
VALID = [
    ("CO", "CC", "1.020.304.050", "1020304050"),
    ("CO", "CC", "0012345", "12345"),  # zero-padded export
    ("CO", "CC", "123", "123"),
    ("CO", "CE", "456 789", "456789"),
    ("CO", "NIT", "213.123.432-1", "2131234321"),
    ("CO", "NIT", f"900.123.456-{checkdigits.co_nit('900123456')}", f"900123456{checkdigits.co_nit('900123456')}"),
    ("VE", "CI", "V-12.345.678", "V12345678"),
    ("VE", "CI", "e 84.123.456", "E84123456"),
    ("VE", "V", "12.345.678", "V12345678"),
    ("VE", "RIF", "V-11470283-4", "V114702834"),
    ("MX", "CURP", "BOXW310820HNERXN09", "BOXW310820HNERXN09"),
    ("MX", "CURP", "boxw 310820 hnerxn 09", "BOXW310820HNERXN09"),
    ("MX", "RFC", "GODE 561231 GR8", "GODE561231GR8"),
    ("MX", "RFC", "MAB-930714-8T4", "MAB9307148T4"),
    ("AR", "DNI", "20.123.456", "20123456"),
    ("AR", "DNI", "1.234.567", "1234567"),
    ("AR", "CUIT", "20-05536168-2", "20055361682"),
    ("AR", "CUIL", "20055361682", "20055361682"),
    ("CL", "RUT", "76.086.428-5", "760864285"),
    ("CL", "RUN", f"12.345.678-{checkdigits.cl_rut('12345678')}", f"12345678{checkdigits.cl_rut('12345678')}"),
    ("CL", "RUT", "1.000.005-k", "1000005K"),
    ("BR", "CPF", "390.533.447-05", "39053344705"),
    ("BR", "CNPJ", "16.727.230/0001-97", "16727230000197"),
    ("PE", "DNI", "10117410", "10117410"),
    ("PE", "DNI", "10117410-2", "10117410"),  # the check digit printed on the card is verified, then dropped
    ("PE", "RUC", "20512333797", "20512333797"),
    ("EC", "CI", "171430710-3", "1714307103"),
    ("EC", "RUC", "1792060346-001", "1792060346001"),
]


@pytest.mark.parametrize(("country", "document_type", "raw", "expected"), VALID)
def test_valid_documents_are_stored_compact(country: str, document_type: str, raw: str, expected: str) -> None:
    # Given / When
    document = normalise_national_id(country, document_type, raw)

    # Then: idempotent, and accepted by the model under the canonical type
    assert document.value == expected
    assert normalise_national_id(document.country, document.document_type, document.value) == document
    identity = Identity(
        kind=IdentityKind.NATIONAL_ID,
        value=document.value,
        country=document.country,
        document_type=document.document_type,
        first_seen=T0,
    )
    assert identity.lookup_value == document.lookup_value == f"{country}:{document.document_type}:{expected}"


def test_aliases_are_one_document() -> None:
    # Given / When / Then: CUIL is a CUIT, RUN is the RUT, V is a Venezuelan cédula
    assert normalise_national_id("AR", "CUIL", "20055361682").document_type == "CUIT"
    assert normalise_national_id("cl", "run", "76086428-5").document_type == "RUT"
    assert normalise_national_id("PE", "CUI", "10117410").document_type == "DNI"
    assert normalise_national_id("VE", "E", "84123456") == NationalId("VE", "CI", "E84123456")


@pytest.mark.parametrize(
    ("country", "document_type", "raw", "problem"),
    [
        ("CO", "CC", "12", "wrong length"),
        ("CO", "CC", "12345678901", "wrong length"),
        ("CO", "CC", "12A45", "wrong format"),
        ("CO", "NIT", "213.123.432-5", "check digit is wrong"),
        ("CO", "NIT", "1234", "wrong length"),
        ("VE", "CI", "12.345.678", "V or E"),
        ("VE", "CI", "V-123", "wrong length"),
        ("VE", "E", "V-12.345.678", "the number says V"),
        ("VE", "RIF", "V-11470283-3", "check digit is wrong"),
        ("MX", "CURP", "BOXW310820HNERXN08", "check digit is wrong"),
        ("MX", "CURP", "BOXW310820HXXRXN09", "not valid"),  # no state XX
        ("MX", "CURP", "BOXW310820", "wrong length"),
        ("MX", "RFC", "COMG-600703", "homoclave"),
        ("MX", "RFC", "GODE 561331 GR8", "not valid"),  # 31 December is fine; month 13 is not
        ("AR", "DNI", "123.456", "wrong length"),
        ("AR", "CUIT", "20-05536168-3", "check digit is wrong"),
        ("AR", "CUIT", "99-05536168-2", "not valid"),
        ("CL", "RUT", "76.086.428-4", "check digit is wrong"),
        ("CL", "RUT", "76.086.428-K", "check digit is wrong"),
        ("BR", "CPF", "390.533.447-06", "check digit is wrong"),
        ("BR", "CPF", "111.111.111-11", "repeated digit"),
        ("BR", "CPF", "390.533.447", "wrong length"),
        ("BR", "CNPJ", "16.727.230/0001-98", "check digit is wrong"),
        ("PE", "DNI", "10117410-3", "check digit is wrong"),
        ("PE", "DNI", "1011741", "wrong length"),
        ("PE", "RUC", "20512333798", "check digit is wrong"),
        ("EC", "CI", "1714307104", "check digit is wrong"),
        ("EC", "CI", "9914307103", "not valid"),  # no province 99
        ("CO", "XX", "123456", "unknown national ID CO XX"),
        ("UY", "CI", "1234567-2", "unknown national ID UY CI"),
        ("CO", "CC", "12#45", "only letters, digits"),
        ("CO", "CC", " - . ", "at least one"),
    ],
)
def test_invalid_documents_are_rejected_with_the_reason(
    country: str, document_type: str, raw: str, problem: str
) -> None:
    # Given / When
    with pytest.raises(ValueError, match=problem) as excinfo:
        normalise_national_id(country, document_type, raw)

    # Then: the document is named, so a 422 answer tells the clerk which rule failed
    assert str(excinfo.value).startswith((f"{country} ", "unknown", "a national ID"))


@pytest.mark.parametrize(
    ("body", "check", "raw"),
    [
        (body, checkdigits.cl_rut(body), f"{int(body):,}".replace(",", ".") + "-" + checkdigits.cl_rut(body))
        for body in ("1000005", "7654321", "15432109", "23456789")
    ],
)
def test_rut_check_digits_match_the_published_algorithm(body: str, check: str, raw: str) -> None:
    # Given a RUT made with the algorithm / When / Then: that check digit and no other
    assert normalise_national_id("CL", "RUT", raw).value == body + check
    for wrong in set("0123456789K") - {check}:
        with pytest.raises(ValueError, match="check digit"):
            normalise_national_id("CL", "RUT", body + wrong)


@pytest.mark.parametrize("body", ["123456789", "987654320", "100200300"])
def test_cpf_check_digits_match_the_published_algorithm(body: str) -> None:
    # Given / When / Then
    check = checkdigits.br_cpf(body)
    assert normalise_national_id("BR", "CPF", f"{body[:3]}.{body[3:6]}.{body[6:]}-{check}").value == body + check
    with pytest.raises(ValueError, match="check digit"):
        normalise_national_id("BR", "CPF", body + check[::-1] if check[0] != check[1] else body + "00")


@pytest.mark.parametrize("body", ["800197268", "900123456", "12345678", "1020304050"])
def test_nit_check_digits_match_the_published_algorithm(body: str) -> None:
    # Given / When / Then
    check = checkdigits.co_nit(body)
    assert normalise_national_id("CO", "NIT", f"{body}-{check}").value == body + check
    with pytest.raises(ValueError, match="check digit"):
        normalise_national_id("CO", "NIT", f"{body}-{(int(check) + 1) % 10}")


@pytest.mark.parametrize("body", ["2012345678", "2712345678", "3071234567", "2334567890"])
def test_cuit_check_digits_match_the_published_algorithm(body: str) -> None:
    # Given / When / Then
    check = checkdigits.ar_cuit(body)
    if check is None:
        pytest.skip("prefix that AFIP re-assigns rather than issue")
    assert normalise_national_id("AR", "CUIT", f"{body[:2]}-{body[2:]}-{check}").value == body + check


@pytest.mark.parametrize("body", ["171430710", "091234567", "240123456"])
def test_ecuadorian_ci_check_digits_match_the_published_algorithm(body: str) -> None:
    # Given / When / Then
    assert normalise_national_id("EC", "CI", body + checkdigits.ec_ci(body)).value == body + checkdigits.ec_ci(body)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # IVR digits and a clerk's typing: plain digits are the region's own documents, by length.
        ("1020304050", "CO", ("CO", "CC", "1020304050")),
        ("1.020.304.050", "CO", ("CO", "CC", "1020304050")),
        ("20.123.456", "AR", ("AR", "DNI", "20123456")),
        ("20055361682", "AR", ("AR", "CUIT", "20055361682")),
        ("39053344705", "BR", ("BR", "CPF", "39053344705")),
        ("760864285", "CL", ("CL", "RUT", "760864285")),
        ("10117410", "PE", ("PE", "DNI", "10117410")),
        ("1714307103", "EC", ("EC", "CI", "1714307103")),
        # Letters or a separated check digit say which document it is, whatever the region.
        ("BOXW310820HNERXN09", "CO", ("MX", "CURP", "BOXW310820HNERXN09")),
        ("GODE561231GR8", "AR", ("MX", "RFC", "GODE561231GR8")),
        ("V-12.345.678", "CO", ("VE", "CI", "V12345678")),
        ("E-84.123.456", "MX", ("VE", "CI", "E84123456")),
        ("V-11470283-4", "CO", ("VE", "RIF", "V114702834")),
        ("76.086.428-5", "MX", ("CL", "RUT", "760864285")),  # not a valid NIT: only the RUT holds
        ("76.086.428-5", "CL", ("CL", "RUT", "760864285")),
        ("1.000.005-K", "PE", ("CL", "RUT", "1000005K")),
        ("390.533.447-05", "CO", ("BR", "CPF", "39053344705")),
        ("16.727.230/0001-97", "MX", ("BR", "CNPJ", "16727230000197")),
        ("20-05536168-2", "CL", ("AR", "CUIT", "20055361682")),
        ("171430710-3", "EC", ("EC", "CI", "1714307103")),
        ("171430710-3", "MX", ("EC", "CI", "1714307103")),
        ("213.123.432-1", "AR", ("CO", "NIT", "2131234321")),
        ("10117410-2", "PE", ("PE", "DNI", "10117410")),
        ("CO:NIT:213.123.432-1", "MX", ("CO", "NIT", "2131234321")),
    ],
)
def test_the_document_is_guessed_from_shape_and_region(raw: str, region: str, expected: tuple[str, str, str]) -> None:
    # Given / When
    document = identify_national_id(raw, region)

    # Then
    assert (document.country, document.document_type, document.value) == expected


@pytest.mark.parametrize(
    ("raw", "region", "problem"),
    [
        ("12345678", "VE", "cannot tell"),  # V or E?
        ("12345678", "MX", "cannot tell"),
        ("12345678", "UY", "no document of region UY"),
        ("12345678901234567", "CO", "cannot tell"),  # too long for a cédula or a NIT
        ("1234567890123", "CO", "CO NIT: the check digit is wrong"),  # 11-16 digits in CO: a NIT with its DV
        ("COMG600703", "CO", "homoclave"),  # an RFC, but one two people can share
        ("ABC", "CO", "cannot tell"),
        # The region's reading decides; a foreign reading that would hold is only mentioned.
        ("76.086.428-4", "CL", "CL RUT: the check digit is wrong; it would be a valid CO NIT"),
        ("76.086.428-5", "CO", "CO NIT: the check digit is wrong; it would be a valid CL RUT"),
    ],
)
def test_guessing_refuses_what_it_cannot_tell(raw: str, region: str, problem: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match=problem):
        identify_national_id(raw, region)


def test_when_two_readings_hold_the_region_decides_or_the_caller_must() -> None:
    # Given a body whose RUT and NIT check digits coincide, written with one check digit
    bodies = (str(number) for number in range(10_000_000, 10_100_000))
    body = next(body for body in bodies if checkdigits.cl_rut(body) == checkdigits.co_nit(body))
    raw = f"{body}-{checkdigits.cl_rut(body)}"

    # When / Then
    assert identify_national_id(raw, "CL").country == "CL"
    assert identify_national_id(raw, "CO").country == "CO"
    with pytest.raises(ValueError, match="could be a CL RUT or CO NIT"):
        identify_national_id(raw, "MX")


def test_the_normaliser_guesses_through_the_port_and_tells_the_document_when_asked() -> None:
    # Given HILO_DEFAULT_REGION=CO
    normaliser = Normaliser(default_region="CO")

    # When / Then
    assert normaliser.normalise(IdentityKind.NATIONAL_ID, "1.020.304.050") == "1020304050"
    assert normaliser.normalise(IdentityKind.NATIONAL_ID, "20.123.456", region="AR") == "20123456"
    assert normaliser.national_id("1.020.304.050") == NationalId("CO", "CC", "1020304050")
    assert normaliser.national_id("V-12.345.678") == NationalId("VE", "CI", "V12345678")
    assert normaliser.national_id("20055361682", country="AR", document_type="CUIL").document_type == "CUIT"
    with pytest.raises(ValueError, match="both the country and the document type"):
        normaliser.national_id("20055361682", country="AR")


def test_the_port_reads_only_documents_of_the_region() -> None:
    # Given the port, whose region is the issuing country of a national ID (and whose answer is a bare value)
    normaliser = Normaliser(default_region="CO")

    # When / Then: a foreign document is refused rather than returned as digits that read back as another
    with pytest.raises(ValueError, match="this is a VE CI, not a document of CO"):
        normaliser.normalise(IdentityKind.NATIONAL_ID, "V-12.345.678")
    with pytest.raises(ValueError, match="this is a BR CPF, not a document of CO"):
        normaliser.normalise(IdentityKind.NATIONAL_ID, "390.533.447-05")
    assert normaliser.normalise(IdentityKind.NATIONAL_ID, "V-12.345.678", region="VE") == "V12345678"


def test_every_country_in_the_issue_has_its_documents() -> None:
    # Given / When / Then
    assert DOCUMENT_TYPES == {
        "CO": ("CC", "CE", "NIT"),
        "VE": ("CI", "RIF"),
        "MX": ("CURP", "RFC"),
        "AR": ("DNI", "CUIT"),
        "CL": ("RUT",),
        "BR": ("CPF", "CNPJ"),
        "PE": ("DNI", "RUC"),
        "EC": ("CI", "RUC"),
    }
