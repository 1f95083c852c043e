"""The customer profile: one person, every identity and consent, whatever the channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat, StringConstraints, model_validator

from shared.models.common import Channel, CustomerId, UtcDatetime
from shared.models.identity import Identity, IdentityKind

_LOCALE_RE: Final = re.compile(r"([a-z]{2,3})(?:-([A-Z]{2}|\d{3}))?")
# Names ZoneInfo resolves on some systems that are not IANA zones (they depend on the host's settings).
_NOT_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})


def _check_locale(value: str) -> str:
    parts = value.replace("_", "-").split("-")
    candidate = "-".join([parts[0].lower(), *(part.upper() for part in parts[1:])])
    if not _LOCALE_RE.fullmatch(candidate):
        raise ValueError("locale must be a language tag like 'es', 'es-CO', 'es-419' or 'pt-BR'")
    return candidate


def _check_time_zone(value: str) -> str:
    if value in _NOT_ZONES or value.startswith(("posix/", "right/")):
        raise ValueError(f"{value!r} is not an IANA time zone name; use one like 'America/Bogota'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ZoneInfoNotFoundError is a KeyError; malformed keys raise ValueError; odd paths can raise OSError.
        raise ValueError(f"unknown IANA time zone {value!r}; use a name like 'America/Bogota'") from exc
    return value


#: BCP 47 language with optional region: ``es``, ``es-CO``, ``es-419``. Case and ``_`` are normalised.
Locale = Annotated[str, AfterValidator(_check_locale)]
#: An IANA time zone name that this runtime's zoneinfo can load.
TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_time_zone)]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")]
#: Scalars only: they filter, export and map to DynamoDB without surprises. Floats must be finite (JSON).
AttributeValue = str | bool | int | FiniteFloat | None


class ConsentPurpose(StrEnum):
    """Why we would message someone: marketing needs an opt-in, transactional only the absence of an opt-out."""

    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class ConsentStatus(StrEnum):
    """The customer's current choice for one channel and purpose."""

    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Consent(BaseModel):
    """Current consent for one (channel, purpose); frozen, a change is a new record with a later ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    channel: Channel
    purpose: ConsentPurpose
    status: ConsentStatus
    #: How we learnt it, e.g. ``keyword:BAJA``, ``web_form``, ``agent``, ``crm``.
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    at: UtcDatetime


class CustomerProfile(BaseModel):
    """A customer; frozen so every change is an explicit copy saved under optimistic locking on ``version``."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: CustomerId
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    locale: Locale = "es"
    #: None until known (asked, or inferred from the phone's country); quiet hours then use the tenant default.
    time_zone: TimeZoneName | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict, max_length=100)
    identities: tuple[Identity, ...] = ()
    consents: tuple[Consent, ...] = ()
    created_at: UtcDatetime
    updated_at: UtcDatetime
    #: Set on the profile that was absorbed by a merge; readers follow it to the surviving profile.
    merged_into: CustomerId | None = None
    #: The version as loaded; the repository writes with ``version = :loaded`` and stores ``version + 1``.
    version: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.updated_at < self.created_at:
            raise ValueError("updated_at is before created_at")
        if self.merged_into == self.id:
            raise ValueError("a profile cannot be merged into itself")
        keys = [(identity.kind, identity.lookup_value) for identity in self.identities]
        if len(keys) != len(set(keys)):
            raise ValueError("identities must be unique by kind and value")
        pairs = [(consent.channel, consent.purpose) for consent in self.consents]
        if len(pairs) != len(set(pairs)):
            raise ValueError("consents hold the current state: one per (channel, purpose)")
        return self

    @property
    def is_merged(self) -> bool:
        """True when this profile was absorbed into another one."""
        return self.merged_into is not None

    def identities_of(self, kind: IdentityKind) -> tuple[Identity, ...]:
        """Return this customer's identities of one kind.

        Parameters
        ----------
        kind : IdentityKind
            The kind wanted.

        Returns
        -------
        tuple of Identity
            In stored order; empty when there is none.
        """
        return tuple(identity for identity in self.identities if identity.kind == kind)

    def consent_for(self, channel: Channel, purpose: ConsentPurpose) -> Consent | None:
        """Return the current consent for a channel and purpose.

        Parameters
        ----------
        channel : Channel
            The channel a message would go out on.
        purpose : ConsentPurpose
            Marketing or transactional.

        Returns
        -------
        Consent or None
            None when the customer never said anything for that pair; the consent rules decide what that means.
        """
        return next((c for c in self.consents if c.channel == channel and c.purpose == purpose), None)


@dataclass(frozen=True)
class AttributeChange:
    """One profile attribute a write changed: its value before and after (None: absent)."""

    name: str
    old_value: AttributeValue
    new_value: AttributeValue


@dataclass(frozen=True)
class AppliedConsents:
    """What folding consent records into a profile found: the consents it held before, and its locale."""

    before: tuple[Consent, ...]
    locale: str
