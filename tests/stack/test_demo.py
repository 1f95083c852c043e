"""`hilo demo broken-tv` against the local twin: a newcomer sees one customer, one case, every channel."""

from __future__ import annotations

import io

import pytest

from hilo.demo import DemoError, Target, broken_tv, read_config
from hilo.local.stack import LocalStack

pytestmark = pytest.mark.stack


def test_the_broken_tv_story_ends_in_one_thread(hilo_stack: LocalStack) -> None:
    # Given the running stack's own configuration, as `hilo demo` reads it
    target = Target(hilo_stack.api_url, read_config(hilo_stack.aws_endpoint, hilo_stack.config.stack_name))
    out = io.StringIO()
    # When the story is played
    result = broken_tv(target, out)
    # Then the call, the IVR digits and the three WhatsApp messages are one customer's one case, in order
    printed = out.getvalue()
    assert "What the agent sees" in printed
    entries = list(reversed(result["timeline"]["entries"]))
    assert [entry["channel"] for entry in entries] == ["voice", "voice", "whatsapp", "whatsapp", "whatsapp"]
    assert len({entry["conversation_id"] for entry in entries}) == 1
    assert result["card"]["current_conversation"]["channels"] == ["voice", "whatsapp"]
    assert "Así llegó el televisor" in printed
    # The test stack's default region is MX, but the caller dials from +57: the IVR digits are a Colombian cédula,
    # and the clerk who types it finds the same customer
    status, by_id = result["by_national_id"]
    assert (status, by_id["customer"]["id"]) == (200, result["card"]["customer"]["id"])
    assert "finds the same customer and case" in printed
    # and the clerk's visit goes on that same case
    assert (result["visit"]["channel"], result["visit"]["conversation_id"]) == (
        "in_store",
        result["card"]["current_conversation"]["id"],
    )
    # and the agent's confirmation leaves for WhatsApp (the fake provider) and comes back read
    assert result["reply"]["channel"] == "whatsapp"
    assert result["reply"]["status_history"] == ["queued", "sent", "delivered", "read"]
    assert "...read" in printed


def test_the_demo_says_clearly_when_no_stack_is_running() -> None:
    with pytest.raises(DemoError, match="is `hilo dev` running"):
        read_config("http://127.0.0.1:9", "nohilo")
