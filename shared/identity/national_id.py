"""Latin-American national identity documents: validated with their check digits, stored compact.

A national ID is a strong identifier: a customer who gives theirs on a second channel joins the profile that
already has it. So a number is accepted only in a form that can belong to one person or company: check digits
are verified where the document has them (``python-stdnum``), and forms that several people can share (an RFC
without its *homoclave*) are refused. The stored value is compact (no dots, dashes or spaces, letters
upper-case), and the lookup value is ``<country>:<type>:<value>``, so the same digits on two documents stay
two identities.

=======  ========  ===========================================  ==========================================
country  type      document                                     validation (stored value)
=======  ========  ===========================================  ==========================================
CO       CC        cédula de ciudadanía                         3-10 digits, no check digit; leading zeros
                                                                dropped (``1020304050``)
CO       CE        cédula de extranjería                        3-10 digits, no check digit
CO       NIT       número de identificación tributaria          mod-11 verification digit (DV), stored with
                                                                it (``9001234567``)
VE       CI        cédula de identidad, ``V`` or ``E``          letter + 4-8 digits, no check digit
                                                                (``V12345678``); type ``V``/``E`` accepted
VE       RIF       registro de información fiscal               type letter + 8 digits + check digit
MX       CURP      clave única de registro de población         18 characters, state code, check digit
MX       RFC       registro federal de contribuyentes           12 (company) or 13 (person) characters with
                                                                a valid date; the *homoclave* is required,
                                                                its check digit is not (about 1.5% of RFCs
                                                                in use fail it, says python-stdnum)
AR       DNI       documento nacional de identidad              7-8 digits, no check digit
AR       CUIT      CUIT / CUIL (same number space)              11 digits, type prefix, check digit; type
                                                                ``CUIL`` accepted as ``CUIT``
CL       RUT       rol único tributario = RUN                   7-8 digits + check digit 0-9 or K
                                                                (``12345678K``); type ``RUN`` accepted
BR       CPF       cadastro de pessoas físicas                  11 digits, two check digits; repeated
                                                                digits (``111.111.111-11``) refused
BR       CNPJ      cadastro nacional da pessoa jurídica         14 characters (alphanumeric from 2026), two
                                                                check digits
PE       DNI       documento nacional de identidad (CUI)        8 digits; the check character printed after
                                                                them is verified when given, then dropped
PE       RUC       registro único de contribuyentes             11 digits, check digit
EC       CI        cédula de identidad                          10 digits, province code, check digit
EC       RUC       registro único de contribuyentes             13 digits, check digit
=======  ========  ===========================================  ==========================================

``python-stdnum`` modules are imported on first use: national IDs arrive rarely (IVR, a clerk, the API), and
``stdnum.util`` costs tens of milliseconds of cold start that a webhook should not pay.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# Letters (with Ñ and &, which RFCs contain), digits, and the separators people type between groups.
_ID_CHARS_RE: Final = re.compile(r"[0-9A-ZÑ&\s.\-/\u2013]{1,40}")
_SEPARATORS_RE: Final = re.compile(r"[\s.\-/\u2013]")
_LOOKUP_FORM_RE: Final = re.compile(r"([A-Z]{2}):([A-Z]{1,6}):(.+)")

_CURP_RE: Final = re.compile(r"[A-Z]{4}\d{6}[A-Z]{6}[0-9A-Z]\d")
_RFC_RE: Final = re.compile(r"[A-ZÑ&]{3,4}\d{6}(?:[0-9A-Z]{3})?")
_VE_CI_RE: Final = re.compile(r"([VE])0*(\d{1,8})")
_VE_RIF_RE: Final = re.compile(r"[VEJPG]\d{9}")
_RUT_WITH_K_RE: Final = re.compile(r"\d{7,8}K")
_PE_DNI_WITH_LETTER_RE: Final = re.compile(r"\d{8}[A-K]")
_ALPHANUMERIC_CNPJ_RE: Final = re.compile(r"[0-9A-Z]{12}\d{2}")
# A check digit written apart: "…-5" (RUT, NIT, EC CI, PE DNI, CUIT) or "…-05" (CPF).
_ONE_CHECK_DIGIT_RE: Final = re.compile(r".*\d\s*-\s*\d")
_CPF_SHAPE_RE: Final = re.compile(r"\d{3}\.?\d{3}\.?\d{3}\s*-\s*\d{2}")
_CNPJ_SHAPE_RE: Final = re.compile(r"\d{2}\.?\d{3}\.?\d{3}\s*/\s*\d{4}\s*-?\s*\d{2}")
_CUIT_SHAPE_RE: Final = re.compile(r"\d{2}\s*-\s*\d{8}\s*-\s*\d")


@dataclass(frozen=True, slots=True)
class NationalId:
    """A validated national ID: issuing country, document type and compact value."""

    country: str
    document_type: str
    value: str

    @property
    def lookup_value(self) -> str:
        """``<country>:<type>:<value>``, as in ``Identity.lookup_value``."""
        return f"{self.country}:{self.document_type}:{self.value}"


def _compact(raw: str) -> str:
    text = raw.strip().upper()
    if not _ID_CHARS_RE.fullmatch(text):
        raise ValueError("a national ID may contain only letters, digits, spaces, dots, dashes and slashes")
    compact = _SEPARATORS_RE.sub("", text)
    if not compact:
        raise ValueError("a national ID needs at least one letter or digit")
    return compact


def _digits(low: int, high: int) -> Callable[[str], str]:
    """A number without check digit: digits only, leading zeros dropped (padded exports make one number)."""

    def check(compact: str) -> str:
        if not compact.isdigit():
            raise ValueError(f"wrong format: expected {low} to {high} digits")
        value = compact.lstrip("0")
        if not low <= len(value) <= high:
            raise ValueError(f"wrong length: expected {low} to {high} digits")
        return value

    return check


def _stdnum(module: str, expected: str) -> Callable[[str], str]:
    """Validate with ``stdnum.<module>.validate``, imported on first use; translate its errors."""

    def check(compact: str) -> str:
        validator = importlib.import_module(f"stdnum.{module}")
        # Imported here too: any stdnum module loads the stdnum package, whose util module is the costly part.
        exceptions = importlib.import_module("stdnum.exceptions")
        try:
            return str(validator.validate(compact))
        except exceptions.InvalidChecksum:
            raise ValueError("the check digit is wrong") from None
        except exceptions.InvalidLength:
            raise ValueError(f"wrong length: expected {expected}") from None
        except exceptions.InvalidComponent:
            raise ValueError(f"a part of it (type, region or date) is not valid: expected {expected}") from None
        except exceptions.ValidationError:
            raise ValueError(f"wrong format: expected {expected}") from None

    return check


def _ve_cedula(compact: str) -> str:
    match = _VE_CI_RE.fullmatch(compact)
    if match is None:
        raise ValueError("wrong format: expected V or E and 4 to 8 digits, e.g. V-12.345.678")
    if len(match[2]) < 4:
        raise ValueError("wrong length: expected V or E and 4 to 8 digits")
    return match[1] + match[2]


def _without_repeated_digits(check: Callable[[str], str]) -> Callable[[str], str]:
    def no_repeats(compact: str) -> str:
        value = check(compact)
        if len(set(value)) == 1:
            # 000.000.000-00 … 999.999.999-99 pass the CPF checksum; the Receita Federal never issues them.
            raise ValueError("a number of one repeated digit is not issued")
        return value

    return no_repeats


_rfc = _stdnum("mx.rfc", "12 (company) or 13 (person) characters: letters, a date, the homoclave")
_cui = _stdnum("pe.cui", "8 digits, optionally with the check character printed after them")
_ar_dni = _stdnum("ar.dni", "7 or 8 digits")
_nit = _stdnum("co.nit", "the number and its verification digit (DV), 8 to 16 digits in all")


def _mx_rfc(compact: str) -> str:
    value = _rfc(compact)
    if len(value) not in (12, 13):
        raise ValueError("the RFC needs its 3-character homoclave: without it two taxpayers can share one")
    return value


def _pe_dni(compact: str) -> str:
    return _cui(compact)[:8]


#: Every (country, document type) Hilo validates, with its rule; see the module docstring.
_DOCUMENTS: Final[dict[tuple[str, str], Callable[[str], str]]] = {
    ("CO", "CC"): _digits(3, 10),
    ("CO", "CE"): _digits(3, 10),
    # Leading zeros weigh nothing in the DV, so dropping them keeps a NIT valid and makes padded forms one.
    ("CO", "NIT"): lambda compact: _nit(compact.lstrip("0")),
    ("VE", "CI"): _ve_cedula,
    ("VE", "RIF"): _stdnum("ve.rif", "a type letter (V, E, J, P or G), 8 digits and a check digit"),
    ("MX", "CURP"): _stdnum("mx.curp", "18 characters: 4 letters, 6 digits, 6 letters, a character, a digit"),
    ("MX", "RFC"): _mx_rfc,
    ("AR", "DNI"): lambda compact: _ar_dni(compact.lstrip("0")),
    ("AR", "CUIT"): _stdnum("ar.cuit", "11 digits: a 2-digit type (20, 23, 27, 30...), 8 digits, a check digit"),
    ("CL", "RUT"): _stdnum("cl.rut", "7 or 8 digits and a check digit (0-9 or K), e.g. 12.345.678-5"),
    ("BR", "CPF"): _without_repeated_digits(_stdnum("br.cpf", "11 digits, the last two check digits")),
    ("BR", "CNPJ"): _without_repeated_digits(_stdnum("br.cnpj", "14 characters, the last two check digits")),
    ("PE", "DNI"): _pe_dni,
    ("PE", "RUC"): _stdnum("pe.ruc", "11 digits starting 10, 15, 17 or 20, the last a check digit"),
    ("EC", "CI"): _stdnum("ec.ci", "10 digits: province (01-24, 30 or 50), 7 digits, a check digit"),
    ("EC", "RUC"): _stdnum("ec.ruc", "13 digits: the cédula or company number and the establishment"),
}

#: Other names for the same document: CUIL and CUIT share one number space, the RUN is the RUT, the CUI is
#: the Peruvian DNI's number.
_ALIASES: Final = {("AR", "CUIL"): "CUIT", ("CL", "RUN"): "RUT", ("PE", "CUI"): "DNI"}

#: The document types Hilo knows, per country.
DOCUMENT_TYPES: Final = MappingProxyType(
    {country: tuple(kind for code, kind in _DOCUMENTS if code == country) for country, _ in _DOCUMENTS}
)


def normalise_national_id(country: str, document_type: str, raw: str) -> NationalId:
    """Validate a national ID of a known country and type and return it compact.

    Parameters
    ----------
    country : str
        ISO 3166-1 alpha-2 issuing country, e.g. ``CO``.
    document_type : str
        The document, e.g. ``CC``; see the module docstring. ``CUIL`` (AR), ``RUN`` (CL), ``CUI`` (PE) are
        read as ``CUIT``, ``RUT``, ``DNI``; for VE, ``V`` or ``E`` means a cédula of that letter.
    raw : str
        The number as written, with or without dots, dashes, slashes and spaces.

    Returns
    -------
    NationalId
        Country, canonical document type and compact value.

    Raises
    ------
    ValueError
        Naming the document and the problem: unknown document, characters, length, format, check digit.
    """
    country, document_type = country.strip().upper(), document_type.strip().upper()
    document_type = _ALIASES.get((country, document_type), document_type)
    compact = _compact(raw)
    if country == "VE" and document_type in ("V", "E"):
        compact = compact if compact[0] in "VE" else document_type + compact
        if compact[0] != document_type:
            raise ValueError(f"VE CI: the number says {compact[0]}, the document type says {document_type}")
        document_type = "CI"
    check = _DOCUMENTS.get((country, document_type))
    if check is None:
        known = ", ".join(f"{code} {kind}" for code, kind in _DOCUMENTS)
        raise ValueError(f"unknown national ID {country} {document_type}: Hilo knows {known}")
    try:
        value = check(compact)
    except ValueError as error:
        raise ValueError(f"{country} {document_type}: {error}") from None
    return NationalId(country, document_type, value)


def _candidates(text: str, compact: str, region: str) -> list[tuple[str, str]]:
    """The documents ``text`` may be, from its shape; plain digits only from the region's own documents."""
    if not compact.isdigit():
        shapes = [
            (_CURP_RE, ("MX", "CURP")),
            (_RFC_RE, ("MX", "RFC")),
            (_VE_CI_RE, ("VE", "CI")),
            (_VE_RIF_RE, ("VE", "RIF")),
            (_RUT_WITH_K_RE, ("CL", "RUT")),
        ]
        if region == "PE":
            shapes.append((_PE_DNI_WITH_LETTER_RE, ("PE", "DNI")))
        if region == "BR":
            shapes.append((_ALPHANUMERIC_CNPJ_RE, ("BR", "CNPJ")))
        return [document for pattern, document in shapes if pattern.fullmatch(compact)]
    if _CNPJ_SHAPE_RE.fullmatch(text):
        return [("BR", "CNPJ")]
    if _CPF_SHAPE_RE.fullmatch(text):
        return [("BR", "CPF")]
    length = len(compact)
    if _ONE_CHECK_DIGIT_RE.fullmatch(text):
        written_with_check = [
            (8 <= length <= 9, ("CL", "RUT")),
            (8 <= length <= 11, ("CO", "NIT")),
            (length == 10, ("EC", "CI")),
            (bool(_CUIT_SHAPE_RE.fullmatch(text)), ("AR", "CUIT")),
            # Peru's check character may be a letter up to K, which reads as a RUT elsewhere: only in PE.
            (length == 9 and region == "PE", ("PE", "DNI")),
        ]
        return [document for fits, document in written_with_check if fits]
    # Plain digits (IVR, a clerk): only the region's documents, told apart by length.
    by_length = {
        "CO": [(3 <= length <= 10, "CC"), (11 <= length <= 16, "NIT")],
        "AR": [(7 <= length <= 8, "DNI"), (length == 11, "CUIT")],
        "BR": [(length == 11, "CPF"), (length == 14, "CNPJ")],
        "CL": [(8 <= length <= 9, "RUT")],
        "PE": [(8 <= length <= 9, "DNI"), (length == 11, "RUC")],
        "EC": [(length == 10, "CI"), (length == 13, "RUC")],
    }
    return [(region, kind) for fits, kind in by_length.get(region, []) if fits]


def identify_national_id(raw: str, region: str) -> NationalId:
    """Work out which document ``raw`` is, validate it and return it compact; for IVR digits or a clerk's typing.

    The guess is conservative. Letters or a written-apart check digit say which documents it can be, from any
    country (a CURP is 18 characters; ``V-12.345.678`` is a Venezuelan cédula; ``12.345.678-5`` a Chilean RUT
    or a Colombian NIT). Plain digits are read only as the region's own documents, by length (in CO, 3-10
    digits are a cédula de ciudadanía, 11-16 a NIT with its DV; a Venezuelan number needs its V or E). If
    the region has a reading, it decides, valid or not (its error then mentions any foreign reading that would
    hold); otherwise the one reading whose check digit holds is taken, and several or none are an error asking
    for the document type.
    Callers should show the returned country and type back to whoever typed the number.

    Parameters
    ----------
    raw : str
        The number as typed, or ``<country>:<type>:<value>`` when the caller knows the document.
    region : str
        ISO 3166-1 alpha-2: the country whose documents plain digits are read as (``HILO_DEFAULT_REGION``).

    Returns
    -------
    NationalId
        The document and its compact value.

    Raises
    ------
    ValueError
        When no document fits, several do, or the one that fits fails validation (its reason is given).
    """
    text = raw.strip().upper()
    if lookup_form := _LOOKUP_FORM_RE.fullmatch(text):
        return normalise_national_id(lookup_form[1], lookup_form[2], lookup_form[3])
    compact = _compact(text)
    region = region.strip().upper()
    candidates = _candidates(text, compact, region)
    if not candidates:
        raise ValueError(
            "cannot tell which national ID this is from its shape; give the country and document type"
            + ("" if region in DOCUMENT_TYPES else f" (no document of region {region} is known)")
        )
    readings: list[NationalId | ValueError] = []
    for country, document_type in candidates:
        try:
            readings.append(normalise_national_id(country, document_type, text))
        except ValueError as error:
            readings.append(error)
    valid = [reading for reading in readings if isinstance(reading, NationalId)]
    local = [reading for (country, _), reading in zip(candidates, readings, strict=True) if country == region]
    if local:
        # The region's own reading decides: a RUT typed with a wrong check digit in Chile must not turn into
        # whichever foreign document that digit happens to fit.
        [reading] = local
        if isinstance(reading, NationalId):
            return reading
        others = " or ".join(f"{document.country} {document.document_type}" for document in valid)
        hint = f"; it would be a valid {others}: give the country and document type if it is one" if others else ""
        raise ValueError(f"{reading}{hint}")
    if len(valid) == 1:
        return valid[0]
    if valid:
        names = " or ".join(f"{document.country} {document.document_type}" for document in valid)
        raise ValueError(f"this could be a {names}; give the country and document type")
    raise next(reading for reading in readings if isinstance(reading, ValueError))
