"""Identities: the phone numbers, addresses and ids by which Hilo recognises a customer.

Values are stored normalised so that equal identities compare (and key) equal. This module only checks the
*shape* of a normalised value and does the trivial part of normalising (trim, lower-case e-mail). Real
normalisation (phone number plans, the Latin-American mobile prefixes, national-ID check digits) plugs in
through ``IdentityNormaliser`` (implemented by ``shared.identity.Normaliser``): callers normalise raw input with
it, then build an ``Identity``, whose validators re-check the invariants every normaliser must honour. Phones
are matched on ``shared.identity.phone_match_key``, which makes one of Mexico's ``+521``/``+52``, Argentina's
``+549``/``+54`` and Brazil's 8/9-digit mobile forms.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Protocol, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator, model_validator

from shared.identity.keys import phone_match_key
from shared.models.common import Channel, UtcDatetime

# E.164: "+", a country code that never starts with 0, 8 to 15 digits in all.
E164_RE: Final = re.compile(r"\+[1-9]\d{7,14}")
_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Ñ and & occur in Mexican RFCs; Colombian cédulas can have as few as 3 digits.
_NATIONAL_ID_RE: Final = re.compile(r"[0-9A-ZÑ&]{3,20}")
_META_SCOPED_ID_RE: Final = re.compile(r"\d{1,32}")
# Telegram chat ids of groups are negative; private chats (users) are positive.
_TELEGRAM_ID_RE: Final = re.compile(r"-?\d{1,20}")
_OPAQUE_ID_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


_OPAQUE_SHAPE: Final = (_OPAQUE_ID_RE, "1-128 characters without control characters")


class IdentityKind(StrEnum):
    """What an identity value is."""

    PHONE = "phone"
    EMAIL = "email"
    NATIONAL_ID = "national_id"
    CRM_ID = "crm_id"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


# The normalised shape of each kind: (pattern, how to say it in an error). Kinds not listed are opaque ids.
# A WhatsApp wa_id is a phone number; storing both the same way lets them link.
_SHAPES: Final[dict[IdentityKind, tuple[re.Pattern[str], str]]] = {
    IdentityKind.EMAIL: (_EMAIL_RE, "like name@domain.tld (at most 254 characters)"),
    IdentityKind.PHONE: (E164_RE, "E.164: '+' then 8 to 15 digits, e.g. +573001234567"),
    IdentityKind.WHATSAPP: (E164_RE, "E.164: '+' then 8 to 15 digits, e.g. +573001234567"),
    IdentityKind.NATIONAL_ID: (_NATIONAL_ID_RE, "3-20 upper-case letters or digits, without dots, dashes or spaces"),
    IdentityKind.MESSENGER: (_META_SCOPED_ID_RE, "the numeric page-scoped id Meta sends"),
    IdentityKind.INSTAGRAM: (_META_SCOPED_ID_RE, "the numeric page-scoped id Meta sends"),
    IdentityKind.TELEGRAM: (_TELEGRAM_ID_RE, "the numeric chat id"),
}


def check_identity_value(kind: IdentityKind, value: str) -> str:
    """Check that ``value`` has the normalised shape for ``kind``; return it (e-mail lower-cased).

    Parameters
    ----------
    kind : IdentityKind
        The kind of identity.
    value : str
        A value already trimmed and, for phones, already in E.164.

    Returns
    -------
    str
        The value as stored.

    Raises
    ------
    ValueError
        With a message naming the expected shape.
    """
    if kind == IdentityKind.EMAIL:
        value = value.lower()
    pattern, shape = _SHAPES.get(kind, _OPAQUE_SHAPE)
    if (kind == IdentityKind.EMAIL and len(value) > 254) or not pattern.fullmatch(value):
        raise ValueError(f"{kind} identity must be {shape}")
    return value


class IdentityNormaliser(Protocol):
    """Port: turns what a customer or provider sent into the stored form of an identity value.

    ``shared.identity.Normaliser`` is the implementation: phonenumbers-based, with the Mexican, Argentinian and
    Brazilian mobile forms handled, and national IDs validated with their check digits.
    """

    def normalise(self, kind: IdentityKind, raw: str, *, region: str | None = None) -> str:
        """Return the normalised value, or raise ``ValueError`` if ``raw`` cannot be one.

        Parameters
        ----------
        kind : IdentityKind
            The kind of identity.
        raw : str
            The value as received.
        region : str, optional
            ISO 3166-1 alpha-2 country: the default region for phone numbers without a country code, the
            issuing country for national IDs.

        Returns
        -------
        str
            A value that ``check_identity_value`` accepts.
        """
        ...


CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
#: Document type within its country: CC, CE, NIT (CO); CURP, RFC (MX); DNI, CUIT (AR); RUT (CL); CPF (BR)...
#: Free-form upper-case code here; ``shared.identity.DOCUMENT_TYPES`` lists the ones validated on input.
DocumentType = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,6}$")]


class Identity(BaseModel):
    """One way to recognise a customer; frozen and stored normalised, so equal identities are equal values."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: IdentityKind
    value: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    country: CountryCode | None = None
    document_type: DocumentType | None = None
    verified: bool = False
    source_channel: Channel | None = None
    first_seen: UtcDatetime

    @field_validator("value")
    @classmethod
    def _value_has_normalised_shape(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        # If ``kind`` failed validation it is absent and its own error is the one worth reporting.
        return value if kind is None else check_identity_value(kind, value)

    @model_validator(mode="after")
    def _national_id_carries_country_and_type(self) -> Self:
        scoped = self.country is not None or self.document_type is not None
        if self.kind == IdentityKind.NATIONAL_ID:
            if self.country is None or self.document_type is None:
                raise ValueError("a national_id identity needs country and document_type, e.g. CO and CC")
        elif scoped:
            raise ValueError("country and document_type apply to national_id identities only")
        return self

    @property
    def lookup_kind(self) -> IdentityKind:
        """The kind under which this identity is looked up: a WhatsApp id *is* a phone number, so they share one."""
        return IdentityKind.PHONE if self.kind == IdentityKind.WHATSAPP else self.kind

    @property
    def lookup_value(self) -> str:
        """The value that identifies this identity within its kind.

        A national ID includes its country and type; a phone or WhatsApp id is its match key, so ``+5215512345678``
        and ``+525512345678`` are one customer (see ``shared.identity.keys``).
        """
        if self.kind == IdentityKind.NATIONAL_ID:
            return f"{self.country}:{self.document_type}:{self.value}"
        if self.kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP):
            return phone_match_key(self.value)
        return self.value
