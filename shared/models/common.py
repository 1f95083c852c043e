"""Building blocks shared by every canonical model: UTC instants, sortable ids, channels and providers.

Nothing here imports AWS code: these models are the language of the domain, the queues and the tests alike.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import AfterValidator, StringConstraints

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Crockford base32, as in ULID: no I, L, O, U, so ids survive being read aloud or typed by an agent.
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE: Final = {char: index for index, char in enumerate(_CROCKFORD)}
_ID_LENGTH: Final = 26
_PREFIX_RE: Final = re.compile(r"[a-z]{2,5}")
# 26 base32 characters hold 130 bits; a 128-bit ULID leaves the first character in 0-7.
_ID_BODY_RE: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


class IdPrefix(StrEnum):
    """Prefix of each kind of id Hilo mints, so a misplaced id is obvious in logs and rejected by models."""

    CUSTOMER = "cus"
    CONVERSATION = "conv"
    MESSAGE = "msg"
    TIMELINE = "tl"
    EVENT = "evt"
    MERGE = "mrg"
    ENROLMENT = "enr"


class Channel(StrEnum):
    """Where a customer interaction happens."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    RCS = "rcs"
    WEBCHAT = "webchat"
    EMAIL = "email"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    VOICE = "voice"
    IN_STORE = "in_store"


class Provider(StrEnum):
    """Who carried a message; ``hilo`` is Hilo itself (web chat, in-store, agent notes)."""

    TWILIO = "twilio"
    META = "meta"
    TELEGRAM = "telegram"
    SENDGRID = "sendgrid"
    SES = "ses"
    HILO = "hilo"


#: Providers that can carry each channel. A message whose pair is not listed is a bug upstream (a webhook
#: mislabelling its channel would also mislabel its dedup key), so models reject it. Adding a provider
#: means adding it here.
PROVIDERS_BY_CHANNEL: Final = MappingProxyType(
    {
        Channel.SMS: frozenset({Provider.TWILIO}),
        Channel.WHATSAPP: frozenset({Provider.META, Provider.TWILIO}),
        Channel.RCS: frozenset({Provider.TWILIO}),
        Channel.WEBCHAT: frozenset({Provider.HILO}),
        Channel.EMAIL: frozenset({Provider.SES, Provider.SENDGRID}),
        Channel.MESSENGER: frozenset({Provider.META}),
        Channel.INSTAGRAM: frozenset({Provider.META}),
        Channel.TELEGRAM: frozenset({Provider.TELEGRAM}),
        Channel.VOICE: frozenset({Provider.TWILIO}),
        Channel.IN_STORE: frozenset({Provider.HILO}),
    }
)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; reject naive ones.

    Parameters
    ----------
    value : datetime
        An aware datetime in any offset.

    Returns
    -------
    datetime
        The same instant with ``tzinfo=UTC``, so sort keys and comparisons never mix offsets.

    Raises
    ------
    ValueError
        If ``value`` is naive: its instant is unknowable, and guessing a zone is how timelines get shuffled.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "naive datetime (no time zone): Hilo stores UTC instants only; "
            "send an offset or 'Z', e.g. 2024-05-01T12:00:00Z"
        )
    return value.astimezone(UTC)


#: A timezone-aware instant, normalised to UTC. Naive input is rejected with a clear message.
UtcDatetime = Annotated[datetime, AfterValidator(ensure_utc)]


def utc_now() -> datetime:
    """Return the current instant as an aware UTC datetime.

    Returns
    -------
    datetime
        ``datetime.now(UTC)``; one name to patch or wrap when a local clock is injected.
    """
    return datetime.now(UTC)


def sortable_timestamp(value: datetime) -> str:
    """Format an instant as fixed-width ISO-8601 UTC, e.g. ``2024-05-01T12:00:00.000000Z``.

    Parameters
    ----------
    value : datetime
        An aware datetime.

    Returns
    -------
    str
        Always 27 characters with microseconds, so strings sort like the instants they encode. Pydantic's
        JSON form drops zero microseconds (``...:00Z`` sorts after ``...:00.5Z``), so storage sort keys use this.

    Raises
    ------
    ValueError
        If ``value`` is naive.
    """
    return ensure_utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _encode_base32(number: int) -> str:
    chars: list[str] = []
    for _ in range(_ID_LENGTH):
        chars.append(_CROCKFORD[number & 0x1F])
        number >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str, *, at: datetime | None = None, seed: str | None = None) -> str:
    """Mint a time-sortable id such as ``cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2``.

    The body is a ULID: 48 bits of Unix milliseconds, then 80 bits of randomness, in Crockford base32.
    Ids sort by creation time to the millisecond; within one millisecond their order is arbitrary.

    Parameters
    ----------
    prefix : str
        Two to five lower-case letters naming the entity (see ``IdPrefix``).
    at : datetime, optional
        The instant to encode; now when omitted.
    seed : str, optional
        When given, the 80 "random" bits are a hash of it, so the same ``(at, seed)`` always gives the same
        id. Use it to make ids of redelivered inputs stable (seed = provider + provider message id).

    Returns
    -------
    str
        ``<prefix>_<26 characters>``.

    Raises
    ------
    ValueError
        If the prefix is malformed, ``at`` is naive, or ``at`` is before 1970 or past the year 10889.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"id prefix must be 2-5 lower-case letters, got {prefix!r}")
    instant = utc_now() if at is None else ensure_utc(at)
    millis = (instant - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"instant {instant.isoformat()} is outside the range an id can encode")
    tail = hashlib.blake2b(seed.encode(), digest_size=10).digest() if seed is not None else secrets.token_bytes(10)
    return f"{prefix}_{_encode_base32((millis << 80) | int.from_bytes(tail, 'big'))}"


def id_time(identifier: str) -> datetime:
    """Return the instant encoded in an id minted by ``new_id``.

    Parameters
    ----------
    identifier : str
        A prefixed id such as ``msg_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2``.

    Returns
    -------
    datetime
        The UTC instant, to the millisecond.

    Raises
    ------
    ValueError
        If ``identifier`` is not a prefixed ULID.
    """
    prefix, _, body = identifier.partition("_")
    if not (_PREFIX_RE.fullmatch(prefix) and _ID_BODY_RE.fullmatch(body)):
        raise ValueError(f"not a Hilo id: {identifier!r}")
    number = 0
    for char in body:
        number = (number << 5) | _DECODE[char]
    return _EPOCH + timedelta(milliseconds=number >> 80)


def _id_check(prefix: IdPrefix) -> Callable[[str], str]:
    def check(value: str) -> str:
        head, _, body = value.partition("_")
        if head != prefix or not _ID_BODY_RE.fullmatch(body):
            raise ValueError(f"expected '{prefix}_' + 26 Crockford base32 characters ({prefix.name.lower()} id)")
        return value

    return check


CustomerId = Annotated[str, AfterValidator(_id_check(IdPrefix.CUSTOMER))]
ConversationId = Annotated[str, AfterValidator(_id_check(IdPrefix.CONVERSATION))]
MessageId = Annotated[str, AfterValidator(_id_check(IdPrefix.MESSAGE))]
TimelineEntryId = Annotated[str, AfterValidator(_id_check(IdPrefix.TIMELINE))]
EventId = Annotated[str, AfterValidator(_id_check(IdPrefix.EVENT))]

#: Ids minted by others (agents from the identity provider, workflows): printable ASCII, no spaces.
ExternalId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
#: Travels from the webhook through every queue message and log line; API Gateway request ids fit.
CorrelationId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
#: A provider's id for a message (Twilio SID, WhatsApp ``wamid``, e-mail ``Message-ID``...). Telegram ids
#: are only unique per chat, so its adapter must send ``<chat id>:<message id>``.
ProviderMessageId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,512}$")]
