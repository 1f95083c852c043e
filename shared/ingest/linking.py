"""Identifiers a customer GIVES inside a message (IVR digits, a shared contact, a web chat form), as identities.

The envelope's sender is who wrote; these are what the sender told us about themselves. Each strong identifier
found here is offered to the ingest use case, which links it to the sender's profile when nobody holds it, and
records a merge suggestion when another profile does (``shared.ingest.service``).

A source is one function ``envelope -> iterable of Given`` listed in ``SOURCES``: adding e-mail signatures or a
CRM id later is one function and one line. An invalid identifier (a wrong check digit, an impossible number) is
skipped and logged by route and kind, never by value, and never fails the message it came in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from shared.ingest.ports import Evidence
from shared.models.common import Channel
from shared.models.identity import Identity, IdentityKind, IdentityNormaliser
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import ContactPart
from shared.observability import logger


class Document(Protocol):
    """A validated national ID as ``shared.identity.NationalId`` gives it."""

    @property
    def country(self) -> str: ...

    @property
    def document_type(self) -> str: ...

    @property
    def value(self) -> str: ...


class LinkingNormaliser(IdentityNormaliser, Protocol):
    """``IdentityNormaliser`` plus the national-ID reader that also says which document it is (``Normaliser``)."""

    def national_id(self, raw: str, *, region: str | None = None) -> Document:
        """Validate a national ID guessed from its shape (plain digits read as a document of ``region``)."""
        ...

    def region_of(self, phone: str) -> str | None:
        """The country of an E.164 number, or None."""
        ...


@dataclass(frozen=True)
class Given:
    """An identifier as found in the envelope, before validation."""

    source: str
    kind: IdentityKind
    raw: str
    #: The provider vouches that it belongs to the sender (Telegram's "share my phone number" button).
    verified: bool
    #: Read it as a document of the country the sender calls from, rather than of the default region.
    callers_country: bool = False


@dataclass(frozen=True)
class GivenIdentity:
    """A validated identifier the sender gave, and where it came from."""

    identity: Identity
    evidence: Evidence


Source = Callable[[InboundEnvelope], Iterable[Given]]


def ivr_digits(envelope: InboundEnvelope) -> Iterator[Given]:
    """The ID number a caller typed in the IVR (Twilio ``<Gather>``): a national ID, typed, so not verified."""
    if envelope.channel == Channel.VOICE and envelope.call is not None and envelope.call.digits:
        yield Given("ivr_digits", IdentityKind.NATIONAL_ID, envelope.call.digits, verified=False, callers_country=True)


def telegram_own_contact(envelope: InboundEnvelope) -> Iterator[Given]:
    """The sender's own phone from Telegram's "share my contact": Telegram checked the number is theirs."""
    if envelope.channel != Channel.TELEGRAM or envelope.metadata.get("contact_is_sender") != "true":
        return
    for part in envelope.parts:
        if isinstance(part, ContactPart) and part.phones:
            yield Given("telegram_contact", IdentityKind.PHONE, part.phones[0], verified=True)


def webchat_contact(envelope: InboundEnvelope) -> Iterator[Given]:
    """The e-mail and phone a web chat visitor typed (``shared.providers.webchat.to_envelope`` metadata)."""
    if envelope.channel != Channel.WEBCHAT:
        return
    if email := envelope.metadata.get("email"):
        yield Given("webchat_email", IdentityKind.EMAIL, email, verified=False)
    if phone := envelope.metadata.get("phone"):
        yield Given("webchat_phone", IdentityKind.PHONE, phone, verified=False)


#: Every route by which a customer gives an identifier. One line per source.
SOURCES: Final[tuple[Source, ...]] = (ivr_digits, telegram_own_contact, webchat_contact)


def given_identities(
    envelope: InboundEnvelope,
    normaliser: LinkingNormaliser,
    region: str | None,
    sources: Iterable[Source] = SOURCES,
) -> tuple[GivenIdentity, ...]:
    """The strong identifiers an envelope gives about its sender, validated; invalid ones are skipped.

    Parameters
    ----------
    envelope : InboundEnvelope
        The envelope; echoes (our own side writing) give nothing about the customer.
    normaliser : LinkingNormaliser
        ``shared.identity.Normaliser``: phones, e-mails, and national IDs with their country and document type.
    region : str, optional
        Default region: for phones without a country code and for plain IVR digits (``CO``: a cédula).
    sources : iterable of Source
        The routes to look at; ``SOURCES`` by default.

    Returns
    -------
    tuple of GivenIdentity
        Each identifier once (by lookup key), first seen at the envelope's ``occurred_at``, with its evidence.
    """
    if envelope.kind == InboundKind.ECHO:
        return ()
    found: dict[tuple[IdentityKind, str], GivenIdentity] = {}
    for source in sources:
        for given in source(envelope):
            identity = _identity(envelope, given, normaliser, region)
            if identity is None:
                continue
            evidence = Evidence(
                provider=str(envelope.provider),
                provider_message_id=envelope.provider_message_id,
                channel=envelope.channel,
                at=envelope.occurred_at,
                source=given.source,
            )
            found.setdefault((identity.lookup_kind, identity.lookup_value), GivenIdentity(identity, evidence))
    return tuple(found.values())


def _identity(
    envelope: InboundEnvelope, given: Given, normaliser: LinkingNormaliser, region: str | None
) -> Identity | None:
    try:
        if given.kind == IdentityKind.NATIONAL_ID:
            if given.callers_country:
                # A +57 caller typing digits gives a Colombian cédula, whatever the company's default region.
                region = normaliser.region_of(envelope.sender.value) or region
            document = normaliser.national_id(given.raw, region=region)
            scope = {"country": document.country, "document_type": document.document_type}
            value = document.value
        else:
            # A number the provider vouches for is international and real: like a sender's, it needs only a
            # possible length (``WHATSAPP`` normalisation), so a range newer than our numbering plan still links.
            as_kind = IdentityKind.WHATSAPP if given.kind == IdentityKind.PHONE and given.verified else given.kind
            scope = {}
            value = normaliser.normalise(as_kind, given.raw, region=region)
        return Identity(
            kind=given.kind,
            value=value,
            verified=given.verified,
            source_channel=envelope.channel,
            first_seen=envelope.occurred_at,
            **scope,
        )
    except ValueError as error:  # pydantic.ValidationError is one too; neither's text is logged (it may hold it)
        logger.info(
            "given identifier skipped",
            extra={
                "provider_message_id": envelope.provider_message_id,
                "source": given.source,
                "identity_kind": str(given.kind),
                "reason": f"not a valid {given.kind} ({type(error).__name__})",
            },
        )
        return None
