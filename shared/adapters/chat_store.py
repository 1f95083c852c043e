"""DynamoDB storage of web chat sessions and their message logs (ProfileTable), and the token key loader.

Items, all in partition ``pk = CHAT#<session id>`` and all expiring with the session (``expires_at``, TTL):

- ``sk = SESSION``: the visitor's details and ``last_seq``, the number of the session's last message.
- ``sk = MSG#<12-digit seq>``: one message, either way (``direction`` inbound|outbound), ``message_id``, ``text``,
  ``at``; inbound ones also ``client_message_id``, ``sender_name``, ``email``, ``phone``.
- ``sk = IN#<client message id>`` / ``OUT#<message id>``: idempotency guard naming the ``seq`` its message got.

Appending a message is one transaction: bump ``last_seq`` on the session only if it still has the value read,
put the guard only if absent, put the message. So messages become visible in sequence order (a poll ``after=``
a sequence never misses one that committed late), and a retry finds its guard instead of appending twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.adapters.dynamodb import from_item, to_item
from shared.clock import now
from shared.errors import PermanentError, RetryableError
from shared.models.inbound import InboundEnvelope
from shared.observability import logger
from shared.providers.webchat import ChatMessage, ChatService, ChatSession, timestamp_key, with_seq
from shared.webhooks import Normalized, webhook_ports

_ATTEMPTS = 5
_LAST_KEY = "MSG#999999999999"


def _pk(session_id: str) -> str:
    return f"CHAT#{session_id}"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


class ChatTokenKey:
    """The ChatTokenSecret's value, cached per execution environment and re-read every ``max_age_s``."""

    def __init__(
        self,
        secret_id: str,
        client: Any | None = None,
        max_age_s: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._client = client
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._cached: tuple[float, bytes] | None = None

    def __call__(self) -> bytes:
        """The signing key.

        Raises
        ------
        RetryableError
            The secret could not be read (and no earlier copy exists).
        """
        moment = self._monotonic()
        if self._cached and moment - self._cached[0] < self._max_age_s:
            return self._cached[1]
        self._client = self._client or aws.client("secretsmanager")
        try:
            value = self._client.get_secret_value(SecretId=self._secret_id)["SecretString"]
        except (ClientError, BotoCoreError) as error:
            if self._cached is not None:
                logger.warning("chat token secret unreadable; using the previous copy")
                return self._cached[1]
            raise RetryableError("The chat token key could not be read.") from error
        if not value:
            raise PermanentError("The chat token secret is empty.")
        self._cached = (moment, value.encode())
        return self._cached[1]


class ChatStore:
    """``ChatRepository`` on DynamoDB (see the module docstring for the item layout)."""

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        self._client = self._client or aws.client("dynamodb")
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(TableName=self.table_name, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("The chat store is unavailable; try again.") from error

    def create_session(self, session: ChatSession) -> None:
        """Store a new session (its id is random: a clash is a bug, so the write is conditional)."""
        item = {
            "pk": _pk(session.session_id),
            "sk": "SESSION",
            "type": "chat_session",
            "session_id": session.session_id,
            "created_at": timestamp_key(session.created_at),
            "token_expires_at": timestamp_key(session.token_expires_at),
            "name": session.name,
            "email": session.email,
            "phone": session.phone,
            "locale": session.locale,
            "page_url": session.page_url,
            "last_seq": session.last_seq,
            "expires_at": session.retain_until,
        }
        self._call("put_item", Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")

    def get_session(self, session_id: str) -> ChatSession | None:
        """The session, read consistently; None if unknown (or removed by TTL)."""
        item = self._call("get_item", Key=to_item({"pk": _pk(session_id), "sk": "SESSION"}), ConsistentRead=True)
        if "Item" not in item:
            return None
        values = from_item(item["Item"])
        return ChatSession(
            session_id=values["session_id"],
            created_at=_instant(values["created_at"]),
            token_expires_at=_instant(values["token_expires_at"]),
            name=values.get("name"),
            email=values.get("email"),
            phone=values.get("phone"),
            locale=values.get("locale"),
            page_url=values.get("page_url"),
            last_seq=values.get("last_seq", 0),
        )

    def set_contact(self, session_id: str, email: str | None, phone: str | None) -> None:
        """Remember an e-mail or phone the visitor gave in a message, for the session's later messages."""
        values = {name: value for name, value in (("email", email), ("phone", phone)) if value}
        if not values:
            return
        self._call(
            "update_item",
            Key=to_item({"pk": _pk(session_id), "sk": "SESSION"}),
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in values),
            ExpressionAttributeNames={f"#{name}": name for name in values},
            ExpressionAttributeValues=to_item({f":{name}": value for name, value in values.items()}),
            ConditionExpression="attribute_exists(pk)",
        )

    def append_inbound(self, session: ChatSession, message: ChatMessage) -> tuple[ChatMessage, bool]:
        """Append a visitor message once per ``client_message_id`` (see ``ChatRepository``)."""
        return self._append(session, message, f"IN#{message.client_message_id}")

    def append_outbound(self, session_id: str, message_id: str, text: str, at: datetime) -> tuple[ChatMessage, bool]:
        """Append an agent's reply once per ``message_id``: what the web chat sender (issue #5) calls.

        Raises
        ------
        PermanentError
            The session does not exist (any more).
        """
        session = self.get_session(session_id)
        if session is None:
            raise PermanentError("No such chat session.")
        reply = ChatMessage(session_id=session_id, message_id=message_id, direction="outbound", text=text, at=at)
        return self._append(session, reply, f"OUT#{message_id}")

    def _append(self, session: ChatSession, message: ChatMessage, guard: str) -> tuple[ChatMessage, bool]:
        pk = _pk(session.session_id)
        current = session.last_seq
        for _attempt in range(_ATTEMPTS):
            placed = with_seq(message, current + 1)
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {"Update": {
                            "TableName": self.table_name,
                            "Key": to_item({"pk": pk, "sk": "SESSION"}),
                            "UpdateExpression": "SET last_seq = :next",
                            "ConditionExpression": "last_seq = :current",
                            "ExpressionAttributeValues": to_item({":next": placed.seq, ":current": current}),
                        }},
                        {"Put": {
                            "TableName": self.table_name,
                            "Item": to_item({"pk": pk, "sk": guard, "type": "chat_guard", "seq": placed.seq,
                                              "expires_at": session.retain_until}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }},
                        {"Put": {
                            "TableName": self.table_name,
                            "Item": to_item(self._message_item(placed, session.retain_until)),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }},
                    ]
                )  # fmt: skip
                return placed, True
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise RetryableError("The chat store is unavailable; try again.") from error
                reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            except BotoCoreError as error:
                raise RetryableError("The chat store is unavailable; try again.") from error
            existing = self._guarded(pk, guard)
            if existing is not None:
                return existing, False
            # Another message took the next place (or a concurrent write collided): read where the log is.
            logger.info("chat append retried", extra={"reasons": reasons})
            fresh = self.get_session(session.session_id)
            if fresh is None:
                raise PermanentError("No such chat session.")
            current = fresh.last_seq
        raise RetryableError("The chat session is busy; try again.")

    def _guarded(self, pk: str, guard: str) -> ChatMessage | None:
        found = self._call("get_item", Key=to_item({"pk": pk, "sk": guard}), ConsistentRead=True)
        if "Item" not in found:
            return None
        seq = int(from_item(found["Item"])["seq"])
        item = self._call("get_item", Key=to_item({"pk": pk, "sk": f"MSG#{seq:012d}"}), ConsistentRead=True)
        if "Item" not in item:  # the three items are written together; a guard alone is corruption
            raise RetryableError("The chat store is inconsistent; try again.")
        return self._message(from_item(item["Item"]))

    def list_messages(self, session_id: str, after_seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        """Messages after ``after_seq``, oldest first, read consistently (see ``ChatRepository``)."""
        found = self._call(
            "query",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=to_item(
                {":pk": _pk(session_id), ":low": f"MSG#{after_seq + 1:012d}", ":high": _LAST_KEY}
            ),
            ConsistentRead=True,
            Limit=limit + 1,
        )
        messages = [self._message(from_item(item)) for item in found.get("Items", [])]
        return messages[:limit], len(messages) > limit

    @staticmethod
    def _message_item(message: ChatMessage, expires_at: int) -> dict[str, Any]:
        return {
            "pk": _pk(message.session_id),
            "sk": message.sort_key,
            "type": "chat_message",
            "session_id": message.session_id,
            "seq": message.seq,
            "message_id": message.message_id,
            "direction": message.direction,
            "text": message.text,
            "at": timestamp_key(message.at),
            "client_message_id": message.client_message_id,
            "sender_name": message.sender_name,
            "email": message.email,
            "phone": message.phone,
            "expires_at": expires_at,
        }

    @staticmethod
    def _message(values: Mapping[str, Any]) -> ChatMessage:
        return ChatMessage(
            session_id=values["session_id"],
            message_id=values["message_id"],
            direction="outbound" if values["direction"] == "outbound" else "inbound",
            text=values["text"],
            at=_instant(values["at"]),
            seq=int(values["seq"]),
            client_message_id=values.get("client_message_id"),
            sender_name=values.get("sender_name"),
            email=values.get("email"),
            phone=values.get("phone"),
        )


def chat_service(environ: Mapping[str, str] | None = None) -> ChatService:
    """Wire the web chat API's adapters from the function's environment (template.yaml sets the variables)."""
    env = os.environ if environ is None else environ
    ports = webhook_ports(env)

    def enqueue(envelope: InboundEnvelope) -> None:
        ports.deliver(Normalized(inbound=(envelope,)), channel="webchat")

    return ChatService(
        repository=ChatStore(env["PROFILE_TABLE_NAME"]),
        key=ChatTokenKey(env["CHAT_TOKEN_SECRET_ARN"]),
        clock=now,
        enqueue=enqueue,
    )
