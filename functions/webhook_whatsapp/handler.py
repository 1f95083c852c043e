"""GET/POST /webhooks/whatsapp (HTTP API): Meta's handshake; WhatsApp Cloud API messages → InboundQueue,
statuses → StatusQueue; answers 200 once enqueued."""

from shared.models.common import Channel
from shared.providers import meta

lambda_handler = meta.webhook_handler(Channel.WHATSAPP)
