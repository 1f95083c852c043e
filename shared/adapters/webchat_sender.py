"""Web chat's "provider": a reply is appended to the visitor's chat session, where the widget polls for it.

Hilo is the provider here, so the message is delivered the moment it is stored (``delivered``; the widget has no read
receipts). A session that expired or never existed cannot be reached: a permanent refusal, so the message falls back
to another channel.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.adapters.chat_store import ChatStore
from shared.errors import PermanentError
from shared.models.message import DeliveryStatus
from shared.models.outbound import SendJob
from shared.outbound.delivery import Accepted, DeliveryRejected, Rejection


class WebchatSender:
    """``ProviderClient`` for web chat."""

    def __init__(self, store: ChatStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def send(self, job: SendJob) -> Accepted:
        text = job.text or "\n".join(part.url or part.filename or "" for part in job.media) or "-"
        try:
            self.store.append_outbound(job.to, job.message_id, text, self.clock())
        except PermanentError as error:
            raise DeliveryRejected("The chat session is gone.", rejection=Rejection.INVALID_ADDRESS,
                                   provider_code="session_gone", reason=error.message) from error  # fmt: skip
        return Accepted(provider_message_id=job.message_id, status=DeliveryStatus.DELIVERED)
