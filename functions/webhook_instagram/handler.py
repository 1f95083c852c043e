"""GET/POST /webhooks/instagram (HTTP API): Meta's handshake; Instagram messages and echoes → InboundQueue,
receipts → StatusQueue; answers 200 once enqueued."""

from shared.models.common import Channel
from shared.providers import meta

lambda_handler = meta.webhook_handler(Channel.INSTAGRAM)
