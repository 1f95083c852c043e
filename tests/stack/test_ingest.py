"""Ingest on the local twin: a signed webhook over real HTTP ends up as a profile, identity and timeline entry."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import http

pytestmark = pytest.mark.stack

TOKEN = TEST_CONFIG["HILO_TELEGRAM_SECRET_TOKEN"]


def telegram_update(chat_id: int, message_id: int, text: str) -> bytes:
    user = {"id": chat_id, "is_bot": False, "first_name": "Mateo", "language_code": "es"}
    message = {"message_id": message_id, "from": user, "chat": {"id": chat_id, "type": "private"},
               "date": 1_773_500_000, "text": text}  # fmt: skip
    return json.dumps({"update_id": 900_000_000 + message_id, "message": message}).encode()


def wait_for_item(dynamodb: Any, table: str, key: dict[str, Any], timeout: float = 15.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        if item:
            return dict(item)
        time.sleep(0.2)
    return None


def timeline(dynamodb: Any, table: str, customer_id: str) -> list[dict[str, Any]]:
    return list(dynamodb.query(TableName=table, KeyConditionExpression="pk = :pk AND begins_with(sk, :tl)",
                               ExpressionAttributeValues={":pk": {"S": f"CUST#{customer_id}"}, ":tl": {"S": "TL#"}},
                               ConsistentRead=True)["Items"])  # fmt: skip


def test_a_telegram_message_becomes_a_profile_and_a_timeline_entry(hilo_stack: LocalStack) -> None:
    # Given a person Hilo has never seen writes to the bot, and Telegram retries the same update
    dynamodb, table = hilo_stack.client("dynamodb"), hilo_stack.physical_id("ProfileTable")
    chat_id, message_id = 8_000_000_000 + secrets.randbelow(10**9), 1 + secrets.randbelow(10**6)
    headers = {"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TOKEN}
    body = telegram_update(chat_id, message_id, "Hola, mi televisor llegó roto")
    # When
    for _ in range(2):
        assert http("POST", f"{hilo_stack.api_url}/webhooks/telegram", body, headers).status == 200
    # Then the identity pointer, the profile and one timeline entry appear
    pointer = wait_for_item(dynamodb, table, {"pk": {"S": f"ID#telegram#{chat_id}"}, "sk": {"S": "ID"}})
    assert pointer is not None, "ingest did not create the identity pointer"
    customer_id = pointer["customer_id"]["S"]
    profile = wait_for_item(dynamodb, table, {"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": "PROFILE"}})
    assert profile is not None
    assert profile["display_name"] == {"S": "Mateo"}
    deadline = time.monotonic() + 10
    while not (entries := timeline(dynamodb, table, customer_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    (entry,) = entries
    assert entry["provider_message_id"] == {"S": f"{chat_id}:{message_id}"}
    assert entry["channel"] == {"S": "telegram"}
    assert entry["parts"]["L"][0]["M"]["text"] == {"S": "Hola, mi televisor llegó roto"}
    # And a second message continues the same conversation
    assert http("POST", f"{hilo_stack.api_url}/webhooks/telegram",
                telegram_update(chat_id, message_id + 1, "¿Me ayudan?"), headers).status == 200  # fmt: skip
    while len(entries := timeline(dynamodb, table, customer_id)) < 2 and time.monotonic() < deadline + 10:
        time.sleep(0.2)
    assert len(entries) == 2
    assert len({item["conversation_id"]["S"] for item in entries}) == 1
