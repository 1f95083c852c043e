"""The send decision: may this message go to this customer, on this channel, now?

Pure rules: no AWS, no I/O, no clock (``now`` is a parameter). The sender calls ``decide`` for every outbound message
and acts on the ``Decision``: send it, put it back until ``until`` (then decide again, since the WhatsApp window or a
consent may have changed meanwhile), drop it with its reason on the timeline, or switch to an approved template (or
another channel). Every parameter has a documented default here; ``docs/outbound.md`` lists which become settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from shared.models.common import Channel, ensure_utc
from shared.models.customer import Consent, ConsentPurpose, ConsentStatus, CustomerProfile


class Action(StrEnum):
    """What the sender does with the message."""

    SEND = "send"
    #: Put it back and decide again at ``Decision.until``; never dropped.
    DEFER = "defer"
    BLOCK = "block"
    #: WhatsApp outside the 24-hour window: only an approved template may go (or another channel).
    NEEDS_TEMPLATE = "needs_template"


class Reason(StrEnum):
    """Machine-readable reason of a decision (metrics and the timeline group by it)."""

    ALLOWED = "allowed"
    OPTED_OUT = "opted_out"
    NO_MARKETING_OPT_IN = "no_marketing_opt_in"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    WHATSAPP_WINDOW_CLOSED = "whatsapp_window_closed"


@dataclass(frozen=True)
class Decision:
    """The answer of ``decide``: an action, its reason code, a reason in English, and for ``defer`` the UTC instant."""

    action: Action
    reason: Reason
    #: For people (logs, the timeline): no personal data, only channels, purposes, times and consent sources.
    detail: str
    until: datetime | None = None

    def __post_init__(self) -> None:
        if (self.action == Action.DEFER) != (self.until is not None):
            raise ValueError("a deferral, and only a deferral, has an 'until'")
        if self.until is not None:
            ensure_utc(self.until)

    @property
    def may_send(self) -> bool:
        """True when the message may go now, as it is."""
        return self.action == Action.SEND


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the customer's local time, when we do not start conversations. ``end`` is exclusive.

    ``start`` after ``end`` (21:00-08:00) spans midnight; ``start`` equal to ``end`` would be ambiguous and is refused.
    """

    start: time = time(21, 0)
    end: time = time(8, 0)

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need a start different from their end; pass None for no quiet hours")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times: give naive times")

    def contains(self, wall: time) -> bool:
        """True when a local wall-clock time falls inside the window."""
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``limit`` marketing messages per customer (all channels together) in any ``days`` days."""

    limit: int = 3
    days: int = 7

    def __post_init__(self) -> None:
        if self.limit < 0 or self.days < 1:
            raise ValueError("a frequency cap needs limit >= 0 and days >= 1")


#: The tenant's zone for customers whose zone is unknown (``CustomerProfile.time_zone`` is None). Should be a setting.
DEFAULT_TIME_ZONE: Final = "America/Bogota"
#: Should be a setting (tenant-wide start and end).
DEFAULT_QUIET_HOURS: Final = QuietHours()
#: Should be a setting (tenant-wide limit and days).
DEFAULT_FREQUENCY_CAP: Final = FrequencyCap()
#: Meta's customer-service window: free-form messages only this long after the customer's last WhatsApp message.
#: A platform rule, not a setting.
WHATSAPP_WINDOW: Final = timedelta(hours=24)
#: A transactional message within this time of the customer's last message on the channel answers them, so quiet
#: hours do not hold it (a customer who writes at 23:30 expects the reply at 23:35, not at 08:00). Could be a setting.
REPLY_GRACE: Final = timedelta(hours=1)
#: Channels whose messages make a phone ring or buzz. E-mail waits in the inbox and web chat only reaches an open
#: page, so quiet hours do not apply to them.
QUIET_HOURS_CHANNELS: Final = frozenset(
    {
        Channel.SMS,
        Channel.WHATSAPP,
        Channel.RCS,
        Channel.MESSENGER,
        Channel.INSTAGRAM,
        Channel.TELEGRAM,
        Channel.VOICE,
    }
)


def decide(
    profile: CustomerProfile,
    channel: Channel,
    purpose: ConsentPurpose,
    now: datetime,
    *,
    last_inbound_at: Mapping[str, datetime],
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS,
    frequency: FrequencyCap = DEFAULT_FREQUENCY_CAP,
    marketing_sent: int = 0,
    default_time_zone: str = DEFAULT_TIME_ZONE,
    template: bool = False,
    urgent: bool = False,
    keyword_reply: bool = False,
    reply_grace: timedelta = REPLY_GRACE,
) -> Decision:
    """Decide whether a message may go to a customer on a channel now.

    The rules, in this order (the first that objects decides):

    1. Consent for the channel: marketing needs an explicit opt-in and no opt-out after it (a transactional opt-out
       counts); transactional needs only the absence of an opt-out. → ``block``.
    2. Frequency cap, marketing only: ``marketing_sent`` at the cap already → ``block`` (a promotion held for days
       is stale, and held ones would all leave together when the window frees).
    3. Quiet hours in the customer's zone, on channels that ring a phone → ``defer`` to the exact UTC instant the
       window ends (DST-correct). Transactional messages pass when ``urgent`` or when they answer the customer
       (who wrote on this channel within ``reply_grace``).
    4. WhatsApp's 24-hour customer-service window: free-form only if the customer's last WhatsApp message is less
       than 24 hours old; otherwise ``needs_template`` (unless ``template``).

    Parameters
    ----------
    profile : CustomerProfile
        The customer: consents, ``time_zone``.
    channel : Channel
        Where the message would go.
    purpose : ConsentPurpose
        Marketing or transactional.
    now : datetime
        The current instant (aware).
    last_inbound_at : mapping of str to datetime
        The customer's last inbound message per channel (``HeadState.last_inbound_at``, keyed ``"whatsapp"``...).
    quiet_hours : QuietHours or None, optional
        The window, 21:00-08:00 by default; None for none.
    frequency : FrequencyCap, optional
        The marketing cap, 3 per 7 days by default.
    marketing_sent : int, optional
        Marketing messages sent to this customer, on any channel, in the cap's last ``frequency.days`` days (the
        caller counts them).
    default_time_zone : str, optional
        The tenant's zone when the profile has none, ``America/Bogota`` by default.
    template : bool, optional
        The message is an approved WhatsApp template, so the 24-hour window does not apply.
    urgent : bool, optional
        A transactional message that must not wait (a fraud alert, a one-time code): quiet hours do not hold it.
        Ignored for marketing, which is never urgent.
    keyword_reply : bool, optional
        The message is the confirmation of an opt-out/opt-in keyword (``KeywordIntent.reply``): it answers the
        customer at once, so consent, the cap and quiet hours do not apply (the WhatsApp window still does).
    reply_grace : timedelta, optional
        How recent the customer's last message on the channel makes a transactional message an answer, 1 hour.

    Returns
    -------
    Decision
        ``send``, ``defer`` (with ``until``), ``block`` or ``needs_template``, with a reason code and an English reason.

    Raises
    ------
    ValueError
        If ``now`` is naive.
    zoneinfo.ZoneInfoNotFoundError
        If ``default_time_zone`` is needed and unknown.
    """
    now = ensure_utc(now)
    last_here = last_inbound_at.get(str(channel))
    marketing = purpose == ConsentPurpose.MARKETING
    if not keyword_reply:
        refusal = _consent_refusal(profile.consents, channel, purpose)
        if refusal is not None:
            return refusal
        if marketing and marketing_sent >= frequency.limit:
            return Decision(
                Action.BLOCK,
                Reason.FREQUENCY_CAP,
                f"{marketing_sent} marketing message(s) in the last {frequency.days} day(s) already reach the cap "
                f"of {frequency.limit}.",
            )
        answering = last_here is not None and now - last_here <= reply_grace
        exempt = not marketing and (urgent or answering)
        if quiet_hours is not None and channel in QUIET_HOURS_CHANNELS and not exempt:
            zone = ZoneInfo(profile.time_zone or default_time_zone)
            until = quiet_until(now, quiet_hours, zone)
            if until is not None:
                local_end = until.astimezone(zone).isoformat(timespec="minutes")
                return Decision(
                    Action.DEFER,
                    Reason.QUIET_HOURS,
                    f"Quiet hours ({quiet_hours.start:%H:%M}-{quiet_hours.end:%H:%M} in {zone.key}) until {local_end}.",
                    until=until,
                )
    if channel == Channel.WHATSAPP and not template:
        last_whatsapp = last_here
        if last_whatsapp is None or now - last_whatsapp >= WHATSAPP_WINDOW:
            when = "never wrote on WhatsApp" if last_whatsapp is None else f"last wrote at {last_whatsapp.isoformat()}"
            return Decision(
                Action.NEEDS_TEMPLATE,
                Reason.WHATSAPP_WINDOW_CLOSED,
                f"The customer {when}: outside WhatsApp's 24-hour window only an approved template may go.",
            )
    return Decision(Action.SEND, Reason.ALLOWED, f"A {purpose} message may go on {channel} now.")


def quiet_until(now: datetime, quiet_hours: QuietHours, zone: ZoneInfo) -> datetime | None:
    """When the quiet hours around ``now`` end, or None when ``now`` is outside them.

    Parameters
    ----------
    now : datetime
        The current instant (aware).
    quiet_hours : QuietHours
        The window, in local wall-clock time.
    zone : ZoneInfo
        The customer's zone.

    Returns
    -------
    datetime or None
        The first UTC instant, after ``now``, at which the local clock reads ``quiet_hours.end`` or later. Computed
        from the wall clock, so a night with a DST change still ends at 08:00 local (not "ten hours later"); when
        the clocks jump over the end (a spring-forward gap), it is the instant of the jump.
    """
    local = ensure_utc(now).astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if not quiet_hours.contains(wall):
        return None
    spans_midnight = quiet_hours.start > quiet_hours.end
    day = local.date() + timedelta(days=1) if spans_midnight and wall >= quiet_hours.start else local.date()
    return _first_instant_reading(day, quiet_hours.end, zone, after=now)


def _first_instant_reading(day: date, wall: time, zone: ZoneInfo, *, after: datetime) -> datetime:
    """The first instant after ``after`` when the clock in ``zone`` reads ``day`` ``wall`` or later."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: a repeated wall time's first occurrence
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        if first > after:
            return first
        return naive.replace(tzinfo=zone, fold=1).astimezone(UTC)  # already in the repeated hour: its second one
    # ``wall`` does not exist that day (the clocks jump over it): find the jump, to the second, by bisection.
    # fold=1 reads the gap with the later offset (an instant before the jump), fold=0 with the earlier (after it).
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _consent_refusal(consents: tuple[Consent, ...], channel: Channel, purpose: ConsentPurpose) -> Decision | None:
    """A ``block`` when the customer's consents forbid this purpose on this channel, else None."""
    held = {consent.purpose: consent for consent in consents if consent.channel == channel}
    transactional = held.get(ConsentPurpose.TRANSACTIONAL)
    opted_out = transactional if transactional is not None and transactional.status == ConsentStatus.OPTED_OUT else None
    if purpose == ConsentPurpose.MARKETING:
        marketing = held.get(ConsentPurpose.MARKETING)
        if marketing is None:
            return Decision(
                Action.BLOCK,
                Reason.NO_MARKETING_OPT_IN,
                f"Marketing on {channel} needs the customer's explicit opt-in for that channel, and there is none.",
            )
        if marketing.status == ConsentStatus.OPTED_OUT:
            opted_out = marketing
        elif opted_out is not None and opted_out.at <= marketing.at:
            opted_out = None  # the marketing opt-in is the customer's latest word on this channel
    if opted_out is None:
        return None
    return Decision(
        Action.BLOCK,
        Reason.OPTED_OUT,
        f"The customer opted out of {opted_out.purpose} messages on {channel} "
        f"({opted_out.source}, {opted_out.at.isoformat()}).",
    )
