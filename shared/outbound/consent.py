"""Consent as the customer states it: opt-out, opt-in and help keywords on inbound text, and the records they make.

Pure rules: no AWS, no I/O, no clock. Ingest (or the bot) calls ``read_keyword`` on each inbound text, saves
``merge_consents(profile.consents, intent.consents)`` on the profile and sends ``intent.reply`` unless
``intent.provider_replies``; ``shared.outbound.policy.decide`` then reads the profile's consents before every send.

The matching rule is deliberately strict: only a message that *is* a keyword counts (see ``normalise``). A customer
who writes "quiero cancelar mi pedido" wants their order cancelled, not to be unsubscribed, and a wrong opt-out
silently cuts someone off from their own appointment reminders.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from shared.models.common import Channel
from shared.models.customer import Consent, ConsentPurpose, ConsentStatus


class KeywordKind(StrEnum):
    """What a keyword message asks for."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


#: Channels where the customer types free text to us. Voice has no text and an in-store note is the clerk's.
TEXT_CHANNELS: Final = frozenset(set(Channel) - {Channel.VOICE, Channel.IN_STORE})
#: Phone-network channels: carriers (and Twilio, which blocks the number with error 21610) read an opt-out as
#: "stop everything from this sender", and HELP is a carrier requirement. Should become a setting.
CARRIER_CHANNELS: Final = frozenset({Channel.SMS, Channel.RCS})

#: Opt-out keywords honoured on every text channel, written as they are after ``normalise`` (upper-cased for reading).
OPT_OUT_KEYWORDS: Final = frozenset(
    {
        # English: Twilio's default list (less the SMS-only words below), plus the obvious spellings.
        "STOP",
        "STOPALL",
        "STOP ALL",
        "UNSUBSCRIBE",
        "OPTOUT",
        "OPT OUT",
        # Spanish.
        "BAJA",
        "DAR DE BAJA",
        "DARME DE BAJA",
        "ALTO",
        "PARAR",
        "DETENER",
        "DESUSCRIBIR",
        "DESUSCRIBIRME",
        "NO MAS",
        "NO MAS MENSAJES",
    }
)
#: Opt-out keywords honoured on SMS/RCS only. On chat channels these are everyday answers to a bot or an agent
#: ("¿Confirmas o cancelas tu cita?" - "Cancelar"), and treating them as an unsubscribe would be wrong.
CARRIER_OPT_OUT_KEYWORDS: Final = frozenset({"CANCEL", "END", "QUIT", "REVOKE", "CANCELAR"})
#: Opt-in keywords. YES/SÍ are left out on purpose (an answer to "¿confirmas tu cita?" is not consent to
#: promotions), and so is INICIO (the usual word to go back to a bot's menu).
OPT_IN_KEYWORDS: Final = frozenset(
    {"START", "UNSTOP", "SUBSCRIBE", "ALTA", "DAR DE ALTA", "DARME DE ALTA", "SUSCRIBIR", "SUSCRIBIRME", "REANUDAR"}
)
#: Help keywords, on SMS/RCS only: on chat channels "ayuda" is a conversation for the bot or an agent.
HELP_KEYWORDS: Final = frozenset({"HELP", "INFO", "AYUDA"})

#: What Twilio itself does on SMS/RCS with a message that is exactly one of these words (no punctuation): it
#: replies with its own text and blocks (or unblocks) the number. Hilo then records the consent but must not send
#: a second confirmation, which Twilio would refuse (21610) after STOP anyway. A Messaging Service with Advanced
#: Opt-Out configured changes this list: it should become a setting.
TWILIO_DEFAULT_KEYWORDS: Final = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "START", "UNSTOP", "YES"}
    | {"HELP", "INFO"}
)

#: Confirmations, by language and by what changed. Short and in plain words: they go out on SMS (UCS-2 once an
#: accent appears, 70 characters a segment).
_REPLIES: Final = MappingProxyType(
    {
        "es": MappingProxyType(
            {
                "opt_out_all": "Listo, no te enviaremos más mensajes por este canal. "
                "Responde ALTA para volver a recibirlos.",
                "opt_out_marketing": "Listo, no te enviaremos más promociones por este canal. Seguirás recibiendo "
                "respuestas y avisos de tus pedidos y citas. Responde ALTA para volver a recibirlas.",
                "opt_in": "Listo, volverás a recibir nuestros mensajes por este canal, también promociones. "
                "Responde BAJA para dejar de recibirlos.",
                "help": "Responde BAJA para dejar de recibir mensajes por este canal o ALTA para volver a recibirlos.",
            }
        ),
        "en": MappingProxyType(
            {
                "opt_out_all": "Done, you won't get any more messages from us on this channel. "
                "Reply START to receive them again.",
                "opt_out_marketing": "Done, you won't get any more promotions from us on this channel. You'll still "
                "get replies and updates about your orders and appointments. Reply START to get promotions again.",
                "opt_in": "Done, you'll receive our messages on this channel again, promotions included. "
                "Reply STOP to stop them.",
                "help": "Reply STOP to stop messages on this channel or START to receive them again.",
            }
        ),
    }
)
#: Confirmations go out in Spanish unless the customer's locale is English (Hilo is Spanish-first).
DEFAULT_LANGUAGE: Final = "es"

_SPACES_RE: Final = re.compile(r"[\s_\-]+")
# Unicode categories trimmed from both ends: letters and digits stay, punctuation (¡!¿?.,), symbols and emoji
# (So, Sk: skin tones), marks (emoji variation selectors), separators and format characters (zero-width joiner).
_TRIMMED: Final = ("P", "S", "Z", "C", "M")


@dataclass(frozen=True)
class KeywordIntent:
    """A keyword message: what it asks, the consent records it makes and the confirmation to send back.

    ``reply`` is transactional and must go out even right after an opt-out (``decide(..., keyword_reply=True)``),
    unless ``provider_replies``: then the provider has already answered on the network and a second reply would be
    a duplicate (or refused).
    """

    kind: KeywordKind
    #: The keyword as matched, upper-case without accents: ``BAJA``, ``NO MAS``, ``STOP``.
    keyword: str
    channel: Channel
    #: New records, one per purpose the keyword changes; empty for HELP. ``source`` is ``keyword:<keyword>``.
    consents: tuple[Consent, ...]
    reply: str
    #: ``es`` or ``en``: the language of ``reply``.
    language: str
    provider_replies: bool


def normalise(text: str) -> str:
    """Reduce a message to the form keywords are compared in.

    Compatibility forms folded (full-width letters), accents removed, case folded, the ends trimmed of white space,
    punctuation, symbols and emoji, and inner runs of spaces, hyphens and underscores made one space. Nothing else:
    a message with other words in it stays a sentence and matches no keyword.

    Parameters
    ----------
    text : str
        The customer's message text.

    Returns
    -------
    str
        Upper-case, e.g. ``"¡Baja! 🙏"`` → ``"BAJA"``, ``"No más."`` → ``"NO MAS"``, ``"opt-out"`` → ``"OPT OUT"``.
    """
    folded = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in folded if not unicodedata.combining(char))
    start, end = 0, len(plain)
    while start < end and unicodedata.category(plain[start])[0] in _TRIMMED and plain[start] != "/":
        start += 1
    while end > start and unicodedata.category(plain[end - 1])[0] in _TRIMMED:
        end -= 1
    return _SPACES_RE.sub(" ", plain[start:end]).strip().upper()


def read_keyword(text: str | None, *, channel: Channel, at: datetime, locale: str = "es") -> KeywordIntent | None:
    """Tell whether an inbound message is an opt-out, opt-in or help keyword, and what it changes.

    A message counts only when it *is* the keyword (``normalise``): "Baja.", "baja 🙏", "STOP!" and "¡No más!"
    match; "no me den de baja", "quiero cancelar mi pedido", "stop please" and "/start" (a bot command) do not.
    CANCEL, CANCELAR, END, QUIT and REVOKE, and the help words, count on SMS/RCS only.

    Scope: an opt-out covers the channel it arrived on only. On SMS/RCS it stops marketing *and* transactional
    messages (carriers' and Twilio's meaning of STOP, applied to the Spanish words too); on chat channels and e-mail
    it stops marketing, and the customer keeps getting answers and news of their own orders and appointments
    (the confirmation says so). An opt-in restores both purposes on that channel: the customer's own word on it is
    an explicit opt-in, and the confirmation names promotions so that it is an informed one.

    Parameters
    ----------
    text : str or None
        The message text (for e-mail, the new text without the quoted thread); None or empty matches nothing.
    channel : Channel
        Where it arrived: the channel the consent applies to.
    at : datetime
        When the customer sent it (the provider's time): the records' ``at``, so a late delivery never overrides
        a newer choice.
    locale : str, optional
        The customer's locale; ``en`` and ``en-*`` get English confirmations, anything else Spanish.

    Returns
    -------
    KeywordIntent or None
        None when the message is not a keyword (or the channel carries no customer text).

    Raises
    ------
    ValueError
        If ``at`` is naive (pydantic's ``ValidationError``, raised when the records are made).
    """
    if not text or channel not in TEXT_CHANNELS:
        return None
    keyword = normalise(text)
    carrier = channel in CARRIER_CHANNELS
    language = "en" if locale.replace("_", "-").split("-")[0].lower() == "en" else DEFAULT_LANGUAGE
    replies = _REPLIES[language]
    changes: tuple[tuple[ConsentPurpose, ConsentStatus], ...]
    if keyword in OPT_OUT_KEYWORDS or (carrier and keyword in CARRIER_OPT_OUT_KEYWORDS):
        kind, reply = KeywordKind.OPT_OUT, replies["opt_out_all" if carrier else "opt_out_marketing"]
        purposes = tuple(ConsentPurpose) if carrier else (ConsentPurpose.MARKETING,)
        changes = tuple((purpose, ConsentStatus.OPTED_OUT) for purpose in purposes)
    elif keyword in OPT_IN_KEYWORDS:
        kind, reply = KeywordKind.OPT_IN, replies["opt_in"]
        changes = tuple((purpose, ConsentStatus.OPTED_IN) for purpose in ConsentPurpose)
    elif carrier and keyword in HELP_KEYWORDS:
        kind, reply, changes = KeywordKind.HELP, replies["help"], ()
    else:
        return None
    consents = tuple(
        Consent(channel=channel, purpose=purpose, status=status, source=f"keyword:{keyword}", at=at)
        for purpose, status in changes
    )
    # Twilio matches the bare word only; with punctuation around it Twilio stays silent and the reply is ours.
    provider_replies = carrier and text.strip().upper() in TWILIO_DEFAULT_KEYWORDS
    return KeywordIntent(
        kind=kind,
        keyword=keyword,
        channel=channel,
        consents=consents,
        reply=reply,
        language=language,
        provider_replies=provider_replies,
    )


def merge_consents(current: Sequence[Consent], new: Sequence[Consent]) -> tuple[Consent, ...]:
    """Fold new consent records into a profile's current ones: the latest per (channel, purpose) wins.

    Parameters
    ----------
    current : sequence of Consent
        ``profile.consents``: at most one per (channel, purpose).
    new : sequence of Consent
        Records to apply, e.g. ``KeywordIntent.consents``.

    Returns
    -------
    tuple of Consent
        One per (channel, purpose), existing pairs in their place and new pairs appended. A record older than the
        one held is ignored (a late or redelivered keyword never undoes a newer choice); at the same instant the new
        record wins, so applying the same records twice changes nothing.
    """
    merged: dict[tuple[Channel, ConsentPurpose], Consent] = {(c.channel, c.purpose): c for c in current}
    for consent in new:
        key = (consent.channel, consent.purpose)
        held = merged.get(key)
        if held is None or consent.at >= held.at:
            merged[key] = consent
    return tuple(merged.values())
