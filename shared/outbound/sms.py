"""SMS encoding and segment count: what a text costs before it is sent.

An SMS carries 140 bytes. Text that fits the GSM-7 default alphabet (3GPP TS 23.038 §6.2.1) travels as 7-bit
septets, 160 to a message; one character outside it and the *whole* message travels as UCS-2 (UTF-16 in
practice), 70 to a message. A longer text is split into parts, each giving up room to the concatenation header:
153 septets or 67 UTF-16 code units per part. Carriers bill per part, so "está" (á is not GSM-7) versus "esta"
can double the price of a campaign.

Pure functions over ``str``; no provider calls.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

# 3GPP TS 23.038 §6.2.1, the default alphabet, in code order 0x00-0x7F with 0x1B (escape to the extension table)
# left out. Exactly as the spec has it: é, É, ñ, Ñ, ü, Ü, à, ¡ and ¿ are in; á, í, ó, ú (and their capitals) are
# not; position 0x09 is the capital Ç only.
_GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# §6.2.1.1, the extension table reached through the escape septet: each costs two septets (ESC + code).
# \f is the page break (0x1B 0x0A).
_GSM7_EXTENSION: Final = frozenset("\f^{}\\[]~|€")

_GSM7_SINGLE: Final = 160
_GSM7_PART: Final = 153  # 160 - 7 septets taken by the 6-byte concatenation header
_UCS2_SINGLE: Final = 70
_UCS2_PART: Final = 67  # 70 - 3 code units taken by the same header


class SmsEncoding(StrEnum):
    """How the text travels: the GSM 7-bit default alphabet, or UCS-2 (UTF-16) when any character is outside it."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


class SmsInfo(BaseModel):
    """What a text costs as an SMS; frozen, a measurement of one exact string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoding: SmsEncoding
    #: Unicode code points in the text, what a person would call its length.
    characters: int = Field(ge=0)
    #: Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2 (an emoji counts 2): the
    #: unit the 160/153 and 70/67 limits are expressed in.
    units: int = Field(ge=0)
    #: Parts the carrier sends and bills; 0 for an empty text.
    segments: int = Field(ge=0)
    #: The distinct characters that forced UCS-2, in order of appearance; empty for GSM-7. What to tell the
    #: author who wonders why the message costs twice as much.
    non_gsm7: tuple[str, ...] = ()


def _septets(char: str) -> int | None:
    if char in _GSM7_BASIC:
        return 1
    if char in _GSM7_EXTENSION:
        return 2
    return None


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _costs(text: str) -> tuple[SmsEncoding, list[int], tuple[str, ...]]:
    """The encoding, each character's cost in that encoding's units, and the characters outside GSM-7."""
    outside = tuple(dict.fromkeys(char for char in text if _septets(char) is None))
    if outside:
        return SmsEncoding.UCS2, [_utf16_units(char) for char in text], outside
    return SmsEncoding.GSM7, [_septets(char) or 0 for char in text], ()


def _part_bounds(costs: list[int], single: int, per_part: int) -> list[tuple[int, int]]:
    """Split character indexes into parts; a character never straddles two (no half escape or surrogate pair)."""
    if not costs:
        return []
    if sum(costs) <= single:
        return [(0, len(costs))]
    bounds: list[tuple[int, int]] = []
    start = used = 0
    for index, cost in enumerate(costs):
        if used + cost > per_part:
            bounds.append((start, index))
            start, used = index, 0
        used += cost
    bounds.append((start, len(costs)))
    return bounds


def _limits(encoding: SmsEncoding) -> tuple[int, int]:
    return (_GSM7_SINGLE, _GSM7_PART) if encoding == SmsEncoding.GSM7 else (_UCS2_SINGLE, _UCS2_PART)


def measure_sms(text: str) -> SmsInfo:
    """Return the encoding, length and segment count of ``text`` sent as one SMS.

    The text is measured exactly as given: no normalisation, no "smart" replacement of characters (Twilio's
    Smart Encoding, if enabled on the account, may later swap some characters for GSM-7 look-alikes and so send
    fewer parts than counted here; never more).

    Parameters
    ----------
    text : str
        The body as it will be sent.

    Returns
    -------
    SmsInfo
        GSM-7 when every character is in the default alphabet or its extension table, else UCS-2; the length in
        that encoding's units; and the number of parts, counted the way a carrier splits: 160 septets (70 UTF-16
        units) fit in one message, beyond that 153 (67) per part, and an extension character or a surrogate pair
        that would straddle two parts moves whole to the next one.

    Examples
    --------
    >>> measure_sms("¡Hola Ana! Tu televisor está listo").encoding  # á is not GSM-7 (¡ is)
    <SmsEncoding.UCS2: 'ucs2'>
    >>> measure_sms("Tu pedido llegó {ok}").non_gsm7
    ('ó',)
    """
    encoding, costs, outside = _costs(text)
    single, per_part = _limits(encoding)
    return SmsInfo(
        encoding=encoding,
        characters=len(text),
        units=sum(costs),
        segments=len(_part_bounds(costs, single, per_part)),
        non_gsm7=outside,
    )


def split_sms(text: str) -> tuple[str, ...]:
    """Split ``text`` into the parts a carrier would send, the same way ``measure_sms`` counts them.

    Parameters
    ----------
    text : str
        The body as it will be sent.

    Returns
    -------
    tuple of str
        One string per part, in order; joined they give ``text`` back. Empty for an empty text. Useful to show an
        author where a long message will be cut; providers split on their own, so senders pass the whole text.
    """
    encoding, costs, _ = _costs(text)
    single, per_part = _limits(encoding)
    return tuple(text[start:end] for start, end in _part_bounds(costs, single, per_part))
