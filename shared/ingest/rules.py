"""The pure rules of ingest: who sent it, which ids a message gets, when a conversation continues, what is written.

Every id derived here is seeded by ``<provider>:<provider message id>`` (``new_id(..., seed=...)``), so a
redelivered envelope produces the same keys and the same events, and the storage conditions do the dedup.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from shared.errors import PermanentError
from shared.ingest.ports import HeadState, HeadTouch, TimelineRecord
from shared.models.common import Channel, IdPrefix, new_id
from shared.models.conversation import Conversation, ConversationStatus
from shared.models.identity import Identity, IdentityKind, IdentityNormaliser
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import (
    ContactPart,
    ContentPart,
    Direction,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Message,
    ReactionPart,
    TextPart,
)
from shared.models.outbound import DirectContent, OutboundCommand
from shared.models.timeline import Actor, ActorKind, TimelineEntry, TimelineKind

#: A word of a name: two or more letters (any script).
_NAME_WORD_RE: Final = re.compile(r"[^\W\d_]{2,}")

#: The identity a channel's sender address is. WhatsApp ids are phones (``Identity.lookup_kind`` makes them share
#: the phone's pointer); Messenger, Instagram, Telegram and web chat ids mean something on their channel only.
IDENTITY_KIND_BY_CHANNEL: Final = MappingProxyType(
    {
        Channel.SMS: IdentityKind.PHONE,
        Channel.RCS: IdentityKind.PHONE,
        Channel.VOICE: IdentityKind.PHONE,
        Channel.WHATSAPP: IdentityKind.WHATSAPP,
        Channel.EMAIL: IdentityKind.EMAIL,
        Channel.MESSENGER: IdentityKind.MESSENGER,
        Channel.INSTAGRAM: IdentityKind.INSTAGRAM,
        Channel.TELEGRAM: IdentityKind.TELEGRAM,
        Channel.WEBCHAT: IdentityKind.WEBCHAT,
    }
)
#: Identities the provider vouches for (the network delivered from that number, the platform issued that id).
#: An e-mail ``From`` can be forged and a web chat session is anonymous, so those are not verified here.
_PROVIDER_VERIFIED: Final = frozenset(
    {IdentityKind.PHONE, IdentityKind.WHATSAPP, IdentityKind.MESSENGER, IdentityKind.INSTAGRAM, IdentityKind.TELEGRAM}
)
#: Conversation statuses a new message continues (``resolved`` and ``closed`` make the next message open a new one).
CONTINUABLE: Final = frozenset({ConversationStatus.OPEN, ConversationStatus.PENDING})
#: What each inbound kind is on the timeline, and the event it raises.
_TIMELINE_KIND: Final = MappingProxyType(
    {
        InboundKind.MESSAGE: TimelineKind.MESSAGE,
        InboundKind.MESSAGE_EDITED: TimelineKind.MESSAGE,
        InboundKind.ECHO: TimelineKind.MESSAGE,
        InboundKind.CALL: TimelineKind.CALL,
        InboundKind.CALL_ENDED: TimelineKind.CALL,
    }
)
EVENT_TYPE: Final = MappingProxyType(
    {
        InboundKind.MESSAGE: "message.received",
        InboundKind.MESSAGE_EDITED: "message.edited",
        InboundKind.ECHO: "message.echoed",
        InboundKind.CALL: "call.received",
        InboundKind.CALL_ENDED: "call.ended",
    }
)
#: What a network-delivered caller id looks like; anything else ("anonymous", "Restricted") names nobody.
_E164_SHAPE_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_PHONE_PUNCTUATION_RE: Final = re.compile(r"[\s().-]")
_SUMMARY_LENGTH: Final = 200
_SPACES_RE: Final = re.compile(r"\s+")


@dataclass(frozen=True)
class MessageKeys:
    """Every id one inbound envelope can give rise to, the same on every delivery of it."""

    seed: str
    entry_id: str
    message_id: str
    customer_id: str
    conversation_id: str

    @classmethod
    def of(cls, envelope: InboundEnvelope) -> MessageKeys:
        """Derive the ids from the provider's message id and timestamp.

        Parameters
        ----------
        envelope : InboundEnvelope
            The envelope; ``occurred_at`` is the provider's own time, stable across its retries.

        Returns
        -------
        MessageKeys
            The ids; ``customer_id`` and ``conversation_id`` are used only if this message creates them.
        """
        seed = f"{envelope.provider}:{envelope.provider_message_id}"
        at = envelope.occurred_at
        return cls(
            seed=seed,
            entry_id=new_id(IdPrefix.TIMELINE, at=at, seed=seed),
            message_id=new_id(IdPrefix.MESSAGE, at=at, seed=seed),
            customer_id=new_id(IdPrefix.CUSTOMER, at=at, seed=seed),
            conversation_id=new_id(IdPrefix.CONVERSATION, at=at, seed=seed),
        )

    def event_seed(self, event_type: str) -> str:
        """Seed of one event of this message, so each type gets its own stable id."""
        return f"{self.seed}:{event_type}"


class Unattributable(PermanentError):
    """Genuine traffic from nobody we can name (a withheld caller id): acknowledged and counted, never retried."""


def sender_identity(envelope: InboundEnvelope, normaliser: IdentityNormaliser, region: str | None) -> Identity:
    """The identity of who sent (or, for an echo, who received) the envelope.

    Parameters
    ----------
    envelope : InboundEnvelope
        The envelope; ``sender`` is always the customer.
    normaliser : IdentityNormaliser
        Turns the provider's address into the stored form (E.164, lower-case e-mail...).
    region : str, optional
        Default region for phone numbers without a country code.

    Returns
    -------
    Identity
        The identity, first seen at the envelope's ``occurred_at``.

    Raises
    ------
    PermanentError
        The channel has no customer identity, or the address cannot be one (an anonymous caller, a short code).
    """
    kind = IDENTITY_KIND_BY_CHANNEL.get(envelope.channel)
    if kind is None:
        raise PermanentError(f"Channel {envelope.channel!s} carries no customer identity.")
    if kind == IdentityKind.PHONE and not _E164_SHAPE_RE.fullmatch(
        _PHONE_PUNCTUATION_RE.sub("", envelope.sender.value)
    ):
        raise Unattributable(f"The {envelope.channel!s} sender has no number (caller ID withheld or restricted).")
    # A sender's number was delivered by the network in international form: like a WhatsApp id it needs only a
    # possible length, so a range newer than our copy of the numbering plan never bounces a real customer.
    as_kind = IdentityKind.WHATSAPP if kind == IdentityKind.PHONE else kind
    try:
        value = normaliser.normalise(as_kind, envelope.sender.value, region=region)
        return Identity(
            kind=kind,
            value=value,
            verified=kind in _PROVIDER_VERIFIED,
            source_channel=envelope.channel,
            first_seen=envelope.occurred_at,
        )
    except ValueError as error:  # pydantic.ValidationError is a ValueError; its text may hold the address
        raise PermanentError(f"The sender is not a valid {kind!s} identity.") from error


def window_start(at: datetime, window: timedelta) -> datetime:
    """The oldest ``last_message_at`` from which a message at ``at`` still continues the conversation."""
    return at - window


def head_touch(
    at: datetime, channel: Channel, window: timedelta, *, inbound: bool, message_id: str | None = None
) -> HeadTouch:
    """What an entry at ``at`` on ``channel`` does to the customer's head (for envelopes, visits alike).

    Parameters
    ----------
    at : datetime
        When it happened (the provider's time, or the visit's).
    channel : Channel
        Where.
    window : timedelta
        The reopen window (``HILO_REOPEN_WINDOW_HOURS``).
    inbound : bool
        The customer reached out (it sets ``last_inbound_at`` for the channel, e.g. WhatsApp's 24-hour window).
    message_id : str, optional
        The message it carries, if any.

    Returns
    -------
    HeadTouch
        The touch, with the window's start that the head's conditional update checks.
    """
    return HeadTouch(
        at=at, window_start=window_start(at, window), channel=channel, inbound=inbound, message_id=message_id
    )


def opened_conversation(customer_id: str, conversation_id: str, touch: HeadTouch) -> tuple[Conversation, HeadState]:
    """The conversation an entry opens, and the head that points at it.

    Parameters
    ----------
    customer_id : str
        Whose.
    conversation_id : str
        Its id, seeded by the entry's input so a retry opens the same one.
    touch : HeadTouch
        The entry that opens it (``head_touch``).

    Returns
    -------
    tuple of (Conversation, HeadState)
        Open, on the entry's channel, opened and last moved at the entry's time.
    """
    at, channel = touch.at, touch.channel
    conversation = Conversation(
        id=conversation_id,
        customer_id=customer_id,
        status=ConversationStatus.OPEN,
        channels=(channel,),
        opened_at=at,
        last_message_at=at,
        last_channel=channel,
    )
    head = HeadState(
        conversation_id=conversation.id,
        status=conversation.status,
        opened_at=at,
        last_message_at=at,
        last_channel=channel,
        channels=frozenset({channel}),
        last_inbound_at={str(channel): at} if touch.inbound else {},
        last_message_id=touch.message_id,
    )
    return conversation, head


def can_continue(head: HeadState | None, at: datetime, window: timedelta) -> bool:
    """Tell whether an entry at ``at`` belongs to the head's conversation.

    The conversation must be open or pending, and its last message no older than ``window`` before ``at``. Any
    channel continues it. An entry older than the last message (a late or redelivered one) belongs to it too, as
    long as the conversation is still active.

    Parameters
    ----------
    head : HeadState or None
        The customer's head; None when the customer has none.
    at : datetime
        When the entry happened (the provider's time).
    window : timedelta
        The reopen window (``HILO_REOPEN_WINDOW_HOURS``).

    Returns
    -------
    bool
        True to continue, False to open a new conversation.
    """
    return head is not None and head.status in CONTINUABLE and head.last_message_at >= window_start(at, window)


def is_from_customer(envelope: InboundEnvelope) -> bool:
    """True unless the envelope is an echo of something our side wrote."""
    return envelope.kind != InboundKind.ECHO


def name_key(display_name: str | None) -> str | None:
    """A weak signal: the name without accents, case or punctuation, when it has at least two words.

    Two profiles with the same full name MAY be one person (or two Juan Pérez): it only ever makes a merge
    suggestion for an agent, never a merge. A single word ("Ana", a nickname) says too little to suggest anything.
    """
    if not display_name:
        return None
    plain = "".join(c for c in unicodedata.normalize("NFKD", display_name) if not unicodedata.combining(c))
    words = _NAME_WORD_RE.findall(plain.casefold())
    return " ".join(words)[:200] if len(words) >= 2 else None


def sender_key(identity: Identity) -> str:
    """``<lookup kind>#<lookup value>``: the identity pointer a message came through, as a merge record lists it."""
    return f"{identity.lookup_kind}#{identity.lookup_value}"


def timeline_record(
    envelope: InboundEnvelope, keys: MessageKeys, customer_id: str, conversation_id: str
) -> TimelineRecord:
    """Map an envelope to the timeline entry (and message) ingest stores.

    Parameters
    ----------
    envelope : InboundEnvelope
        The envelope.
    keys : MessageKeys
        Its ids.
    customer_id, conversation_id : str
        Where it belongs.

    Returns
    -------
    TimelineRecord
        The record.

    Raises
    ------
    PermanentError
        A message kind without any content part (it cannot be shown, and a webhook should not have sent it).
    """
    timeline_kind = _TIMELINE_KIND[envelope.kind]
    message: Message | None = None
    if timeline_kind == TimelineKind.MESSAGE:
        if not envelope.parts:
            raise PermanentError(f"A {envelope.kind!s} envelope without content cannot be ingested.")
        echo = envelope.kind == InboundKind.ECHO
        message = Message(
            id=keys.message_id,
            direction=Direction.OUTBOUND if echo else Direction.INBOUND,
            channel=envelope.channel,
            provider=envelope.provider,
            provider_message_id=envelope.provider_message_id,
            customer_id=customer_id,
            conversation_id=conversation_id,
            # An echo's envelope names the customer as sender (its FIFO group); the message goes the other way.
            sender=envelope.recipient if echo else envelope.sender,
            recipient=envelope.sender if echo else envelope.recipient,
            parts=envelope.parts,
            sent_at=envelope.occurred_at,
            received_at=envelope.received_at,
        )
    actor = (
        Actor(kind=ActorKind.AGENT, id=f"{envelope.provider}:external")
        if envelope.kind == InboundKind.ECHO
        else Actor(kind=ActorKind.CUSTOMER)
    )
    entry = TimelineEntry(
        id=keys.entry_id,
        customer_id=customer_id,
        conversation_id=conversation_id,
        occurred_at=envelope.occurred_at,
        channel=envelope.channel,
        kind=timeline_kind,
        summary=summary(envelope),
        message_id=message.id if message is not None else None,
        actor=actor,
    )
    extras: dict[str, Any] = {}
    if envelope.call is not None:
        extras["call"] = envelope.call.model_dump(mode="json", exclude_none=True)
    if envelope.subject:
        extras["subject"] = envelope.subject
    if envelope.in_reply_to:
        extras["in_reply_to"] = envelope.in_reply_to
    if envelope.references:
        extras["references"] = list(envelope.references)
    if envelope.metadata:
        extras["metadata"] = dict(envelope.metadata)
    if envelope.raw_ref:
        extras["raw_ref"] = envelope.raw_ref
    return TimelineRecord(
        entry=entry,
        message=message,
        inbound_kind=str(envelope.kind),
        provider=str(envelope.provider),
        provider_message_id=envelope.provider_message_id,
        received_at=envelope.received_at,
        extras=extras,
    )


def summary(envelope: InboundEnvelope) -> str:
    """The short line an agent sees in the timeline list (Spanish, Hilo's default locale)."""
    if envelope.kind in (InboundKind.CALL, InboundKind.CALL_ENDED):
        call = envelope.call
        if envelope.kind == InboundKind.CALL:
            line = "Llamada entrante" + (" (IVR)" if call is not None and call.digits else "")
        else:
            status = call.status if call is not None else "terminada"
            seconds = f", {call.duration_seconds} s" if call is not None and call.duration_seconds is not None else ""
            line = f"Llamada {status}{seconds}"
        return line
    text = " | ".join(_part_line(part) for part in envelope.parts) or "(sin contenido)"
    if envelope.kind == InboundKind.MESSAGE_EDITED:
        text = f"(editado) {text}"
    if envelope.subject and not any(isinstance(part, TextPart) for part in envelope.parts):
        text = f"{envelope.subject} | {text}"
    return shorten(text) or "(sin contenido)"


def shorten(text: str, limit: int = _SUMMARY_LENGTH) -> str:
    """``text`` on one line (runs of white space made one space), cut to ``limit`` characters with an ellipsis."""
    compact = _SPACES_RE.sub(" ", text).strip()
    return compact if len(compact) <= limit else compact[: limit - 1] + "…"


def _part_line(part: ContentPart) -> str:
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, MediaPart):
        return part.caption or part.filename or f"[{part.mime_type.split(';')[0]}]"
    if isinstance(part, LocationPart):
        return f"Ubicación: {part.name}" if part.name else "Ubicación"
    if isinstance(part, InteractiveReplyPart):
        return part.title
    if isinstance(part, ContactPart):
        return f"Contacto: {part.name}"
    if isinstance(part, ReactionPart):
        return f"Reacción {part.emoji}" if part.emoji else "Reacción eliminada"
    return "(contenido)"  # pragma: no cover - the union above is exhaustive


def keyword_reply(envelope: InboundEnvelope, customer_id: str, text: str) -> OutboundCommand:
    """The confirmation of an opt-out/opt-in keyword, on the channel it came on, placed just after it.

    Its key and time come from the envelope, so every redelivery of the keyword asks for the same one message.
    """
    return OutboundCommand(
        correlation_id=envelope.correlation_id,
        key=f"keyword:{envelope.provider}:{envelope.provider_message_id}"[:200],
        customer_id=customer_id,
        channel=envelope.channel,
        to=envelope.sender.value,  # the very number (or chat) the keyword came from
        content=DirectContent(parts=(TextPart(text=text),)),
        keyword_reply=True,
        actor=Actor(kind=ActorKind.SYSTEM),
        requested_at=envelope.occurred_at + timedelta(milliseconds=1),
    )
