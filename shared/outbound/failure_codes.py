"""Which provider error codes mean "this message will never reach the customer this way": one table for all of Hilo.

The senders (a synchronous refusal, ``shared/adapters/senders``) and the status function (an asynchronous ``failed``
callback, ``shared.delivery_status``) both ask ``rejection_for``; ``shared.outbound.fallback.plan_fallback`` then
decides what the ``Rejection`` allows. A code that is not here answers None: not a *known* permanent failure of the
recipient or the content, so nothing falls back. That is deliberate for account-level problems (Twilio 21408 or
30034, Meta 131031 account locked, 131042 payment, 368 policy block): every message of the channel fails the same
way, a human must act, and the failures show up in ``message.failed`` events by code rather than being hidden by a
quiet switch of channel. Rate limits (Meta 131048, 131056, 130429; Telegram 429) are transient: a retry helps.

Codes are the provider's own, as text:

- Twilio: the ``ErrorCode`` of a status callback or of the API's error body (``"30003"``).
- Meta: the Graph ``code``, or ``"<code>/<error_subcode>"`` when the subcode is what tells (Messenger's
  ``"10/2018278"``). A compound code that is not listed is looked up by its ``code`` alone.
- Telegram: ``"<error_code>/<description>"``, built by ``telegram_code`` (the Bot API's ``error_code`` is an HTTP
  status shared by unrelated errors; the description says which). A description is matched by its listed beginning.

Pure: no I/O, nothing but the table and its lookups. Sources: Twilio's error dictionary (twilio.com/docs/api/errors),
Meta's WhatsApp Cloud API and Messenger Platform error code pages, the Telegram Bot API's error descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from shared.models.common import Provider
from shared.outbound.delivery import Rejection


@dataclass(frozen=True)
class FailureCode:
    """One provider code, what it means for the message, and why (a few words, for docs and reviews)."""

    provider: Provider
    code: str
    rejection: Rejection
    meaning: str


_T, _M, _TG = Provider.TWILIO, Provider.META, Provider.TELEGRAM
_INVALID, _NOT_ON = Rejection.INVALID_ADDRESS, Rejection.NOT_ON_CHANNEL
_WINDOW, _UNSUB = Rejection.WINDOW_CLOSED, Rejection.UNSUBSCRIBED
_CONTENT, _OTHER = Rejection.CONTENT, Rejection.OTHER

#: The table. One row per (provider, code); a test checks there are no duplicates.
FAILURE_CODES: Final[tuple[FailureCode, ...]] = (
    # ---- Twilio: SMS, MMS, RCS and WhatsApp through Twilio (status callbacks and API errors)
    FailureCode(_T, "21211", _INVALID, "invalid 'To' phone number"),
    FailureCode(_T, "21612", _INVALID, "'To' cannot be reached from this sender (unroutable)"),
    FailureCode(_T, "21614", _NOT_ON, "'To' is not a mobile number (cannot receive SMS)"),
    FailureCode(_T, "21610", _UNSUB, "the recipient replied STOP to this sender"),
    FailureCode(_T, "21617", _CONTENT, "body exceeds 1,600 characters"),
    FailureCode(_T, "21620", _CONTENT, "invalid media URL"),
    # The handset is off, out of coverage or roaming: this message is over, another channel may still reach them.
    FailureCode(_T, "30003", _OTHER, "unreachable destination handset"),
    FailureCode(_T, "30004", _UNSUB, "message blocked: the recipient or their carrier blocks this sender (opt-out)"),
    FailureCode(_T, "30005", _INVALID, "unknown destination handset (number inactive or wrong)"),
    FailureCode(_T, "30006", _NOT_ON, "landline or unreachable carrier"),
    # The SMS carrier's or Twilio's spam filter: other channels apply other rules, so this is not a content refusal.
    FailureCode(_T, "30007", _OTHER, "message filtered by the carrier"),
    FailureCode(_T, "30008", _OTHER, "unknown error reported by the carrier"),
    FailureCode(_T, "30019", _CONTENT, "content size exceeds the carrier's limit"),
    FailureCode(_T, "63003", _INVALID, "channel could not find the 'To' address"),
    FailureCode(_T, "63005", _CONTENT, "channel did not accept the content"),
    FailureCode(_T, "63013", _CONTENT, "channel policy violation"),
    FailureCode(_T, "63016", _WINDOW, "free-form message outside the 24-hour window (WhatsApp, Messenger)"),
    FailureCode(_T, "63024", _NOT_ON, "invalid message recipient (not a WhatsApp user, or an old client)"),
    FailureCode(_T, "63032", _OTHER, "WhatsApp limitation: the user is part of an experiment"),
    FailureCode(_T, "63049", _OTHER, "Meta chose not to deliver this marketing message"),
    # ---- Meta: WhatsApp Cloud API (status webhooks and API errors)
    FailureCode(_M, "131021", _INVALID, "recipient cannot be the sender"),
    FailureCode(_M, "131026", _NOT_ON, "undeliverable: not on WhatsApp, old client, or terms not accepted"),
    FailureCode(_M, "131047", _WINDOW, "re-engagement: more than 24 hours since the customer last wrote"),
    # The per-user marketing limit, and Meta's marketing experiment: this message, not the address, is refused.
    FailureCode(_M, "131049", _OTHER, "Meta chose not to deliver (ecosystem engagement limit)"),
    FailureCode(_M, "130472", _OTHER, "the user's number is part of an experiment"),
    FailureCode(_M, "131050", _UNSUB, "the user stopped marketing messages from this business"),
    FailureCode(_M, "131051", _CONTENT, "unsupported message type"),
    FailureCode(_M, "131052", _CONTENT, "media download error"),
    FailureCode(_M, "131053", _CONTENT, "media upload error"),
    FailureCode(_M, "132000", _CONTENT, "template parameter count mismatch"),
    FailureCode(_M, "132001", _CONTENT, "template does not exist in this language"),
    FailureCode(_M, "132005", _CONTENT, "template hydrated text too long"),
    FailureCode(_M, "132007", _CONTENT, "template format character policy violated"),
    FailureCode(_M, "132012", _CONTENT, "template parameter format mismatch"),
    FailureCode(_M, "132015", _CONTENT, "template is paused"),
    FailureCode(_M, "132016", _CONTENT, "template is disabled"),
    # ---- Meta: Messenger and Instagram (Send API errors: code/subcode)
    FailureCode(_M, "10/2018278", _WINDOW, "sent outside the allowed 24-hour window"),
    FailureCode(_M, "10/2018065", _WINDOW, "sent outside the allowed window (needs a message tag)"),
    FailureCode(_M, "100/2018001", _INVALID, "no matching user found"),
    # Instagram's own subcodes for the same two refusals.
    FailureCode(_M, "10/2534022", _WINDOW, "Instagram: sent outside the allowed window"),
    FailureCode(_M, "100/2534014", _INVALID, "Instagram: no matching user found"),
    # Blocked the page or deactivated: treated as an opt-out, so only a transactional message looks elsewhere.
    FailureCode(_M, "551", _UNSUB, "this person isn't available right now"),
    # ---- Telegram Bot API (synchronous: Telegram has no delivery callbacks)
    FailureCode(_TG, "400/chat not found", _INVALID, "chat not found"),
    FailureCode(_TG, "400/peer_id_invalid", _INVALID, "invalid chat id"),
    FailureCode(_TG, "400/message is too long", _CONTENT, "text longer than 4,096 characters"),
    FailureCode(_TG, "400/can't parse entities", _CONTENT, "malformed formatting entities"),
    FailureCode(_TG, "400/wrong file identifier", _CONTENT, "media not found by Telegram"),
    FailureCode(_TG, "403/bot was blocked by the user", _UNSUB, "the user blocked the bot"),
    FailureCode(_TG, "403/user is deactivated", _INVALID, "the user's account is deleted"),
    FailureCode(_TG, "403/bot can't initiate conversation with a user", _NOT_ON, "the user never started the bot"),
    # Any other 403: the bot may not write to that chat (kicked, not a member); a 400 alone says nothing.
    FailureCode(_TG, "403", _UNSUB, "the bot may not write to this chat"),
)

_BY_KEY: Final[Mapping[tuple[Provider, str], FailureCode]] = MappingProxyType(
    {(entry.provider, entry.code): entry for entry in FAILURE_CODES}
)
_DETAILED: Final[Mapping[tuple[Provider, str], tuple[FailureCode, ...]]] = MappingProxyType(
    {
        (provider, head): tuple(
            entry for entry in FAILURE_CODES if entry.provider == provider and entry.code.startswith(f"{head}/")
        )
        for provider, head in {(entry.provider, entry.code.split("/", 1)[0]) for entry in FAILURE_CODES}
    }
)
_TELEGRAM_PREFIXES: Final = ("bad request:", "forbidden:", "unauthorized:", "conflict:")


def telegram_code(error_code: int | str, description: str | None) -> str:
    """The table's code for a Telegram Bot API error: ``"<error_code>/<description>"``, lower case, without the
    ``Bad Request:`` / ``Forbidden:`` prefix (``403, "Forbidden: bot was blocked by the user"`` →
    ``"403/bot was blocked by the user"``); just the number when there is no description."""
    detail = (description or "").strip().lower()
    for prefix in _TELEGRAM_PREFIXES:
        if detail.startswith(prefix):
            detail = detail[len(prefix) :].strip()
            break
    return f"{str(error_code).strip()}/{detail}" if detail else str(error_code).strip()


def failure_code(provider: Provider | str, code: str | int | None) -> FailureCode | None:
    """The table's row for a provider's code, or None.

    Parameters
    ----------
    provider : Provider or str
        Who reported it (``twilio``, ``meta``, ``telegram``...).
    code : str, int or None
        The provider's code as described in this module (``"30003"``, ``"10/2018278"``, ``telegram_code(...)``).

    Returns
    -------
    FailureCode or None
        The exact row; else, for ``"<head>/<detail>"``, the row of that head alone (for Telegram first a row of that
        head whose description begins ``detail``); None for anything else (unknown provider or code, empty code).
    """
    try:
        who = Provider(provider)
    except ValueError:
        return None
    key = str(code).strip() if code is not None else ""
    if who == Provider.TELEGRAM:
        key = key.lower()
    if not key:
        return None
    if (exact := _BY_KEY.get((who, key))) is not None:
        return exact
    head, _, detail = key.partition("/")
    if detail and who == Provider.TELEGRAM:
        for entry in _DETAILED.get((who, head), ()):
            if detail.startswith(entry.code.split("/", 1)[1]):
                return entry
    return _BY_KEY.get((who, head))


def rejection_for(provider: Provider | str, code: str | int | None) -> Rejection | None:
    """What a provider's error code means for the message: a ``Rejection``, or None when it is not a known permanent
    failure (then nothing falls back; see the module docstring for why some final-looking codes are left out).

    Parameters
    ----------
    provider : Provider or str
        Who reported it.
    code : str, int or None
        The provider's code (see ``failure_code``).

    Returns
    -------
    Rejection or None
        The kind of refusal, for ``shared.outbound.fallback.plan_fallback``.
    """
    found = failure_code(provider, code)
    return found.rejection if found is not None else None
