"""The fallback rule: after a permanent failure on one channel, which command (if any) tries the next.

One rule for both places a message fails for good: the sender, when the provider refuses it at once
(``shared.outbound.sending``), and the status function, when a ``failed`` callback arrives later
(``shared.delivery_status``). Pure: the caller sends the command it gets back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from shared.models.common import Channel
from shared.models.customer import ConsentPurpose
from shared.models.outbound import OutboundCommand
from shared.outbound.delivery import Rejection

#: How many channels one message may try in all: the first and two fallbacks.
MAX_CHANNELS: Final = 3


def plan_fallback(
    command: OutboundCommand, failed: Channel, rejection: Rejection, at: datetime
) -> OutboundCommand | None:
    """The command that tries another channel after ``failed`` refused ``command`` for good, or None.

    Rules, in order:

    - ``CONTENT``: the content itself was refused; another channel would get the same content, so none.
    - ``UNSUBSCRIBED``: the customer told this channel to stop; only a transactional message looks for another
      (``failed`` is excluded from then on, so it never goes back there).
    - A keyword confirmation (``keyword_reply``) answers on the channel the keyword came on, or not at all.
    - At most ``MAX_CHANNELS`` channels per message, counting ``failed``.
    - Otherwise ``command.fallback(failed, at)``: the best remaining channel, with ``failed`` excluded.

    Parameters
    ----------
    command : OutboundCommand
        The command whose message failed (a fallback's own command on its second failure).
    failed : Channel
        The channel it failed on.
    rejection : Rejection
        Why (``shared.outbound.failure_codes.rejection_for``, or the sender's ``DeliveryRejected.rejection``).
    at : datetime
        When it failed. It becomes the fallback's ``requested_at``, which its message and timeline ids are minted
        from, so a caller that repeats itself (a redelivery) must pass the same instant: the provider's time of the
        failure, not "now".

    Returns
    -------
    OutboundCommand or None
        The fallback (key ``<key>#fb<n>``, deterministic), or None when no other channel should be tried.
    """
    if rejection == Rejection.CONTENT:
        return None
    if rejection == Rejection.UNSUBSCRIBED and command.purpose != ConsentPurpose.TRANSACTIONAL:
        return None
    if command.keyword_reply:
        return None
    if len({*command.exclude_channels, failed}) >= MAX_CHANNELS:
        return None
    return command.fallback(failed, at)
