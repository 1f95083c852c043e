"""The identity normaliser: the one implementation of ``shared.models.IdentityNormaliser``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from shared.identity.email import normalise_email
from shared.identity.phone import normalise_phone, phone_region
from shared.models.identity import IdentityKind, check_identity_value

if TYPE_CHECKING:
    from shared.identity.national_id import NationalId

_REGION_RE: Final = re.compile(r"[A-Z]{2}")


def _region(region: str) -> str:
    code = region.strip().upper()
    if not _REGION_RE.fullmatch(code):
        raise ValueError("a region is an ISO 3166-1 alpha-2 country code, e.g. CO")
    return code


class Normaliser:
    """Turns what a customer or provider sent into the stored form of an identity value.

    * phone: E.164 by the numbering plans, with Mexico's ``+521``, Argentina's ``15`` and Brazil's 8-digit
      mobiles handled (``shared.identity.phone``); a number without country code is read in the region.
    * whatsapp: the ``wa_id`` (international, with or without ``+``) as a phone; see ``normalise_phone``.
    * email: trimmed, NFC, lower-cased (``shared.identity.email``).
    * national_id: the compact value of a document issued in the region (the port's ``region`` is the issuing
      country), guessed from its shape (``identify_national_id``); use ``national_id`` to learn the country and
      document type, to give them, or to read a foreign document.
    * messenger, instagram, telegram, webchat, crm_id: channel-scoped ids, trimmed and shape-checked.

    Matching is not done here: ``Identity.lookup_value`` applies ``phone_match_key`` to phones.

    Parameters
    ----------
    default_region : str
        ``HILO_DEFAULT_REGION``: the region for phone numbers without a country code and for national IDs when
        a call does not name one.

    Raises
    ------
    ValueError
        If ``default_region`` is not a two-letter country code.
    """

    def __init__(self, default_region: str = "CO") -> None:
        self.default_region = _region(default_region)

    def normalise(self, kind: IdentityKind, raw: str, *, region: str | None = None) -> str:
        """Return the stored form of ``raw``; see ``shared.models.IdentityNormaliser``.

        Parameters
        ----------
        kind : IdentityKind
            The kind of identity.
        raw : str
            The value as received.
        region : str, optional
            ISO 3166-1 alpha-2 region for this value; the default region when omitted.

        Returns
        -------
        str
            A value that ``check_identity_value`` accepts.

        Raises
        ------
        ValueError
            Naming the problem (never the whole value), fit for a 422 answer.
        """
        code = self.default_region if region is None else _region(region)
        if kind == IdentityKind.PHONE:
            value = normalise_phone(raw, code)
        elif kind == IdentityKind.WHATSAPP:
            value = normalise_phone(raw, code, international=True)
        elif kind == IdentityKind.EMAIL:
            value = normalise_email(raw)
        elif kind == IdentityKind.NATIONAL_ID:
            document = self.national_id(raw, region=code)
            if document.country != code:
                # The port returns a bare value, so only the region's documents keep it unambiguous (and the
                # value reads back as the same document); foreign documents go through ``national_id``.
                raise ValueError(
                    f"this is a {document.country} {document.document_type}, not a document of {code}; "
                    "give its country and document type"
                )
            value = document.value
        else:
            value = raw.strip()
        return check_identity_value(kind, value)

    def region_of(self, phone: str) -> str | None:
        """The country of an E.164 number (``+57…`` → ``CO``), or None; see ``phone_region``."""
        return phone_region(phone)

    def national_id(
        self, raw: str, *, country: str | None = None, document_type: str | None = None, region: str | None = None
    ) -> NationalId:
        """Validate a national ID; with ``country`` and ``document_type`` as given, else guessed from its shape.

        Parameters
        ----------
        raw : str
            The number as written.
        country, document_type : str, optional
            The document, when the caller knows it (a form with a document-type selector). Give both or none.
        region : str, optional
            Where plain digits are read when guessing; the default region when omitted.

        Returns
        -------
        NationalId
            Country, document type, compact value and ``lookup_value``.

        Raises
        ------
        ValueError
            If only one of ``country`` and ``document_type`` is given, or the number is not valid.
        """
        # National IDs are rare (IVR, a clerk, the API): their ~14 patterns and stdnum load on first use.
        from shared.identity.national_id import identify_national_id, normalise_national_id

        if country is not None and document_type is not None:
            return normalise_national_id(country, document_type, raw)
        if country is not None or document_type is not None:
            raise ValueError("give both the country and the document type of a national ID, or neither")
        return identify_national_id(raw, self.default_region if region is None else _region(region))
