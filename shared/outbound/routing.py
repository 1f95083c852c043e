"""Channel choice: where a message should go, in order of preference, before the send rules have their say.

Pure: the planner passes the profile, the head and the channels this deployment can send on; ``candidates`` answers
with every channel worth trying, best first, each with the customer's address on it. The planner then asks
``policy.decide`` about each in turn and falls back down the list on a block or a permanent failure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.ingest.ports import HeadState
from shared.models.common import Channel
from shared.models.customer import CustomerProfile
from shared.models.identity import Identity, IdentityKind
from shared.models.outbound import Intent, OutboundCommand, Route

#: The identity kinds that reach the customer on each channel, best first (a WhatsApp id is a phone number that we
#: know is on WhatsApp; a plain phone may or may not be).
_KINDS_FOR: Final[Mapping[Channel, tuple[IdentityKind, ...]]] = {
    Channel.WHATSAPP: (IdentityKind.WHATSAPP, IdentityKind.PHONE),
    Channel.SMS: (IdentityKind.PHONE, IdentityKind.WHATSAPP),
    Channel.RCS: (IdentityKind.PHONE, IdentityKind.WHATSAPP),
    Channel.EMAIL: (IdentityKind.EMAIL,),
    Channel.MESSENGER: (IdentityKind.MESSENGER,),
    Channel.INSTAGRAM: (IdentityKind.INSTAGRAM,),
    Channel.TELEGRAM: (IdentityKind.TELEGRAM,),
    Channel.WEBCHAT: (IdentityKind.WEBCHAT,),
}

#: Preference by intent (DESIGN story 4): urgent and confirmations to the phone, details to e-mail, reassurance to a
#: conversation. A channel missing from a list is still tried, after the listed ones.
INTENT_ORDER: Final[Mapping[Intent | None, tuple[Channel, ...]]] = {
    Intent.URGENT: (Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.TELEGRAM),
    Intent.CONFIRMATION: (Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.TELEGRAM, Channel.EMAIL),
    Intent.DETAIL: (Channel.EMAIL, Channel.WHATSAPP, Channel.TELEGRAM, Channel.MESSENGER, Channel.INSTAGRAM),
    Intent.REASSURANCE: (Channel.WEBCHAT, Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM, Channel.TELEGRAM),
    Intent.NOTIFICATION: (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL),
    None: (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL),
}
#: A channel the customer wrote on within this long counts as "recently active" and moves up (after intent).
RECENT: Final = timedelta(days=30)
#: The profile attribute a CRM or agent sets to name the customer's preferred channel.
PREFERRED_CHANNEL_ATTRIBUTE: Final = "preferred_channel"


@dataclass(frozen=True)
class Candidate:
    """A channel to try and the customer's address on it."""

    channel: Channel
    address: str


def address_on(profile: CustomerProfile, channel: Channel) -> str | None:
    """The customer's address on ``channel``: the most recently seen identity of the best kind, or None."""
    for kind in _KINDS_FOR.get(channel, ()):
        identities: tuple[Identity, ...] = profile.identities_of(kind)
        if identities:
            return max(identities, key=lambda identity: identity.first_seen).value
    return None


def candidates(
    command: OutboundCommand,
    profile: CustomerProfile,
    head: HeadState | None,
    available: Collection[Channel],
    now: datetime,
) -> tuple[Candidate, ...]:
    """Every channel worth trying for ``command``, best first.

    - ``explicit``: the named channel only (a fallback command, which is ``best``, tries the others).
    - ``reply``: the channel the customer last wrote on, then the ``best`` order.
    - ``best``: the customer's preferred channel (profile attribute ``preferred_channel``) unless the intent is
      urgent; then the intent's order (``INTENT_ORDER``); then the channels they wrote on in the last 30 days,
      most recent first; then the rest. Without an intent (or for a plain notification), recent activity leads.

    Channels the deployment cannot send on (``available``), the command excludes, or the customer has no address on
    are left out.
    """
    if command.route == Route.EXPLICIT:
        assert command.channel is not None  # the model guarantees it
        order: list[Channel] = [command.channel]
    else:
        order = _best_order(command.intent, profile, head, now)
        if command.route == Route.REPLY and head is not None and head.last_inbound_at:
            last = max(head.last_inbound_at.items(), key=lambda item: item[1])[0]
            if last in Channel.__members__.values():
                order.insert(0, Channel(last))
    found: list[Candidate] = []
    for channel in dict.fromkeys(order):
        if channel not in available or channel in command.exclude_channels:
            continue
        address = command.to if command.to is not None and channel == command.channel else address_on(profile, channel)
        if address is not None:
            found.append(Candidate(channel, address))
    return tuple(found)


def _best_order(
    intent: Intent | None, profile: CustomerProfile, head: HeadState | None, now: datetime
) -> list[Channel]:
    recent = sorted(
        (
            (at, Channel(name))
            for name, at in (head.last_inbound_at.items() if head is not None else ())
            if name in Channel.__members__.values() and now - at <= RECENT
        ),
        reverse=True,
    )
    active = [channel for _, channel in recent]
    # An intent decides (details go by e-mail even to a customer who only ever used WhatsApp); without one, the
    # channels the customer is using lead. Recently active channels come next, then every other.
    order = list(INTENT_ORDER[intent]) if intent not in (None, Intent.NOTIFICATION) else []
    order += [channel for channel in active if channel not in order]
    order += [channel for channel in INTENT_ORDER[intent] if channel not in order]
    order += [channel for channel in _KINDS_FOR if channel not in order]
    preferred = profile.attributes.get(PREFERRED_CHANNEL_ATTRIBUTE)
    if intent != Intent.URGENT and isinstance(preferred, str) and preferred in Channel.__members__.values():
        order.insert(0, Channel(preferred))
    return order
