"""Phone numbers to E.164 with Google's numbering plans (``phonenumbers``, the lite build).

What is stored is the number as it is dialled today, in E.164. Two Latin-American legacy forms that the plans
no longer accept are rewritten first, because real senders still use them (see ``shared.identity.keys``):

* Mexico's ``+52 1`` mobile prefix (WhatsApp ``wa_id`` ``521…``; phone books; ``044``/``045``/``01`` trunk
  prefixes typed nationally), abolished in 2019: stored as ``+52`` + 10 digits.
* Brazil's 8-digit mobiles (old WhatsApp accounts): stored with their 9th digit.

Argentina's mobile ``9`` is kept in the stored value (``+549…``, what WhatsApp and carriers use and what a
reply must be sent to); the match key drops it. A national ``15`` is turned into it by the numbering plan:
``011 15-2345-6789`` with region AR is ``+5491123456789``.

Cold start (2-core box, Python 3.11, compiled bytecode): ``import phonenumbers`` (lite: no geocoder or carrier
data) takes about 15-17 ms; each country's metadata is loaded on its first number, about 1-3 ms, so a worker
pays for the regions it sees, not for the whole world. ``shared.models`` does not import this module.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult

from shared.identity.keys import phone_match_key

# Digits (any script: phonenumbers reads them), a leading '+', and the punctuation people put between groups.
_PHONE_CHARS_RE: Final = re.compile(r"\+?[\d\s().\-/]{1,64}")
_PUNCTUATION_RE: Final = re.compile(r"[\s().\-/]")
_REGION_RE: Final = re.compile(r"[A-Z]{2}")
# Mexican national input with a pre-2019 trunk prefix: 044/045 (mobile) or 01 (long distance) + 10 digits.
_MX_TRUNK_RE: Final = re.compile(r"(?:044|045|01)(\d{10})")
# Shortest digit string for which "international without the '+'" is tried when the national reading fails:
# no Latin-American national number has more than 11 digits (BR mobiles, AR mobiles with their 9).
_MIN_DIGITS_FOR_MISSING_PLUS: Final = 11

_LENGTH_PROBLEMS: Final = {
    ValidationResult.INVALID_COUNTRY_CODE: "its country code is not a country calling code",
    ValidationResult.TOO_SHORT: "it is too short for its country",
    ValidationResult.TOO_LONG: "it is too long for its country",
    ValidationResult.INVALID_LENGTH: "no number in its country has that many digits",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "it lacks an area code",
}
_PARSE_PROBLEMS: Final = {
    NumberParseException.INVALID_COUNTRY_CODE: "its country code is not a country calling code",
    NumberParseException.NOT_A_NUMBER: "it is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short after its international prefix",
    NumberParseException.TOO_SHORT_NSN: "it is too short",
    NumberParseException.TOO_LONG: "it is too long",
}


def _invalid(problem: str) -> ValueError:
    return ValueError(f"not a valid phone number: {problem}")


def _parse(text: str, region: str | None) -> PhoneNumber:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise _invalid(_PARSE_PROBLEMS.get(error.error_type, "it cannot be read")) from None


def _e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _checked(text: str, region: str | None, *, trust_range: bool) -> str:
    """Parse, rewrite the MX/BR legacy forms, and check against the numbering plan; return E.164."""
    number = _parse(text, region)
    if number.extension:
        raise _invalid("it has an extension; an identity is a whole line")
    legacy = _e164(number)
    current = phone_match_key(legacy) if legacy.startswith(("+52", "+55")) else legacy
    if current != legacy:
        number = _parse(current, None)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        raise _invalid(_LENGTH_PROBLEMS.get(reason, "it has the wrong length"))
    if not phonenumbers.is_valid_number(number) and (not trust_range or number.italian_leading_zero):
        # A trusted number outside the known ranges is kept only if E.164 can carry it: phonenumbers does not
        # round-trip the leading zeros of a national number that matches no range (+31 000… would shrink).
        raise _invalid("its country's numbering plan has no such range")
    return _e164(number)


def normalise_phone(raw: str, region: str | None, *, international: bool = False) -> str:
    """Return ``raw`` as the E.164 number it denotes; see the module docstring for the Latin-American forms.

    Parameters
    ----------
    raw : str
        Digits with an optional leading ``+`` or ``00`` and the usual punctuation (spaces, ``-``, ``.``, ``/``,
        parentheses). Scheme prefixes such as ``whatsapp:`` or ``tel:`` are the caller's to strip.
    region : str, optional
        ISO 3166-1 alpha-2 region for numbers written without a country code (``300 123 4567`` with ``CO``).
    international : bool
        The number is known to be international even without ``+`` (a WhatsApp ``wa_id``). Such numbers were
        verified by their provider, so they need only a possible length for their country, not a range our
        copy of the numbering plan already knows: a newly opened range must not bounce a real customer.

    Returns
    -------
    str
        E.164, e.g. ``+573001234567``.

    Raises
    ------
    ValueError
        Naming the problem: unexpected characters, missing country code, wrong length, no such range.
    """
    text = raw.strip()
    if not _PHONE_CHARS_RE.fullmatch(text):
        raise _invalid("use digits, an optional leading '+', spaces, dots, dashes, slashes or parentheses")
    digits = _PUNCTUATION_RE.sub("", text)
    if digits.startswith("00"):
        # Most of Latin America dials 00 for abroad, but phonenumbers only knows each country's own IDD
        # (Colombia's are 005/007/009), so a '0057…' typed in Colombia would be misread.
        digits = "+" + digits[2:]
    elif international and not digits.startswith("+"):
        digits = "+" + digits
    if not digits.lstrip("+").isdecimal():
        raise _invalid("it has no digits, or a '+' in the middle")
    if digits.startswith("+"):
        return _checked(digits, None, trust_range=international)
    if region is None or not _REGION_RE.fullmatch(region):
        raise _invalid("it has no country code ('+' and the code) and no default region to assume one")
    if region == "MX" and (trunk := _MX_TRUNK_RE.fullmatch(digits)):
        digits = trunk[1]
    try:
        return _checked(digits, region, trust_range=False)
    except ValueError as national_error:
        # Telegram contacts and some exports give international numbers without their '+'.
        if len(digits) < _MIN_DIGITS_FOR_MISSING_PLUS:
            raise
        try:
            return _checked("+" + digits, None, trust_range=False)
        except ValueError:
            raise national_error from None


def phone_region(e164: str) -> str | None:
    """The country (ISO 3166-1 alpha-2) an E.164 number belongs to, or None when it is not one country's.

    An IVR reads the digits a caller types as a document of the country they call from: a ``+57`` caller's
    ``1020304050`` is a Colombian cédula whatever ``HILO_DEFAULT_REGION`` says.
    """
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except NumberParseException:
        return None
    return region if region and _REGION_RE.fullmatch(region) and region != "ZZ" else None
