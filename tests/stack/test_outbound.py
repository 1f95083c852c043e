"""Outbound end to end on the twin: an agent's reply leaves for WhatsApp through the fake provider server, comes back
as signed status callbacks and reads as delivered and read on the timeline; a WhatsApp number that turns out not to
be on WhatsApp falls back to SMS by itself; a keyword gets its confirmation.

The twin runs the fake providers because the test configuration names no provider API URL (``hilo dev`` does the
same), so these are the flows a newcomer sees locally.
"""

from __future__ import annotations

import secrets
from typing import Any

from hilo.local.stack import LocalStack
from tests.conftest import TEST_CONFIG
from tests.helpers import whatsapp_text
from tests.stack.test_one_thread import agent, email_from, eventually, next_second


def new_customer(stack: LocalStack, text: str = "Hola, ¿ya llegó el repuesto?") -> tuple[str, str, dict[str, Any]]:
    """A customer who wrote on WhatsApp: (phone, wa_id, their card once ingested)."""
    wa_id = f"57300{secrets.randbelow(10**7):07d}"
    whatsapp_text(stack.api_url, TEST_CONFIG["HILO_META_APP_SECRET"], wa_id, text, next_second(stack))
    card = eventually(stack, f"/v1/customers?phone=%2B{wa_id}", lambda body: body.get("current_conversation"))
    return f"+{wa_id}", wa_id, card


def outbound_entry(stack: LocalStack, customer_id: str, message_id: str, done: Any) -> dict[str, Any]:
    def found(body: dict[str, Any]) -> Any:
        return [e for e in body["entries"] if e.get("message_id") == message_id and done(e)]

    body = eventually(stack, f"/v1/customers/{customer_id}/timeline", found)
    return next(e for e in body["entries"] if e.get("message_id") == message_id)


def test_an_agent_reply_leaves_for_whatsapp_once_and_comes_back_read(hilo_stack: LocalStack) -> None:
    fake = hilo_stack.fake_providers
    assert fake is not None
    _, wa_id, card = new_customer(hilo_stack)
    conversation_id = card["current_conversation"]["id"]
    key = {"idempotency-key": secrets.token_hex(8)}

    first = agent(hilo_stack, "POST", f"/v1/conversations/{conversation_id}/messages",
                  {"text": "¡Sí! Ya llegó, te esperamos mañana 🙌"}, **key)  # fmt: skip
    again = agent(hilo_stack, "POST", f"/v1/conversations/{conversation_id}/messages",
                  {"text": "¡Sí! Ya llegó, te esperamos mañana 🙌"}, **key)  # fmt: skip

    assert first.status == 202, first.body
    assert (first.json()["status"], first.json()["channel"]) == ("queued", "whatsapp")
    assert (again.status, again.json()["message_id"]) == (200, first.json()["message_id"])
    message_id = first.json()["message_id"]
    entry = outbound_entry(hilo_stack, card["customer"]["id"], message_id, lambda e: e["message"]["status_history"])
    assert entry["actor"]["kind"] == "agent"
    # The fake answered, then posted sent, delivered and read, signed as Meta signs them, to the webhook.
    read = outbound_entry(hilo_stack, card["customer"]["id"], message_id,
                          lambda e: e["message"]["status_history"][-1]["status"] == "read")  # fmt: skip
    assert [s["status"] for s in read["message"]["status_history"]] == ["queued", "sent", "delivered", "read"]
    requests = [r for r in fake.requests if r.to == wa_id]
    assert len(requests) == 1  # the repeated request is the same message: one provider call
    assert requests[0].body["text"]["body"] == "¡Sí! Ya llegó, te esperamos mañana 🙌"


def test_a_number_not_on_whatsapp_falls_back_to_sms_on_its_own(hilo_stack: LocalStack) -> None:
    fake = hilo_stack.fake_providers
    assert fake is not None
    phone, _, card = new_customer(hilo_stack)
    # Meta accepts the message, then reports 131026 (undeliverable) in a status callback, as it does.
    fake.fail(phone, "not_on_channel", provider="whatsapp")

    sent = agent(hilo_stack, "POST", f"/v1/customers/{card['customer']['id']}/messages",
                 {"text": "Tu cita quedó para el jueves a las 10:00", "channel": "whatsapp"})  # fmt: skip

    assert sent.status == 202, sent.body
    customer_id = card["customer"]["id"]
    failed = outbound_entry(hilo_stack, customer_id, sent.json()["message_id"],
                            lambda e: e["message"]["status_history"][-1]["status"] == "failed")  # fmt: skip
    assert failed["message"]["status_history"][-1]["error_code"] == "131026"

    def sms_fallback(body: dict[str, Any]) -> Any:
        return [e for e in body["entries"] if e.get("fallback_of") == sent.json()["message_id"]
                and e["message"]["status_history"][-1]["status"] in ("sent", "delivered")]  # fmt: skip

    body = eventually(hilo_stack, f"/v1/customers/{customer_id}/timeline", sms_fallback)
    [fallback] = sms_fallback(body)
    assert fallback["channel"] == "sms"
    [sms] = [r for r in fake.requests if r.provider == "twilio" and r.body.get("To") == [phone]]
    assert sms.body["Body"] == ["Tu cita quedó para el jueves a las 10:00"]


def test_baja_is_confirmed_on_whatsapp_and_then_marketing_is_refused(hilo_stack: LocalStack) -> None:
    fake = hilo_stack.fake_providers
    assert fake is not None
    _, wa_id, card = new_customer(hilo_stack, "BAJA")
    customer_id = card["customer"]["id"]

    def confirmation(body: dict[str, Any]) -> Any:
        outbound = [e for e in body["entries"] if e.get("message") and e["message"]["direction"] == "outbound"]
        return [e for e in outbound if e["message"]["status_history"][-1]["status"] != "queued"]

    eventually(hilo_stack, f"/v1/customers/{customer_id}/timeline", confirmation)
    [request] = [r for r in fake.requests if r.to == wa_id]
    assert "ALTA" in request.body["text"]["body"]

    promo = agent(hilo_stack, "POST", f"/v1/customers/{customer_id}/messages",
                  {"template_id": "producto_disponible", "purpose": "marketing", "channel": "whatsapp"})  # fmt: skip
    assert promo.status == 409, promo.body
    assert promo.json()["details"][0]["reason"] == "opted_out"


def test_an_e_mail_reply_goes_through_ses_threaded_under_the_customers_mail(hilo_stack: LocalStack) -> None:
    from moto.ses.models import ses_backends

    address = f"luisa.{secrets.token_hex(4)}@gmail.com"
    email_from(hilo_stack, address, next_second(hilo_stack), "¿Me reenvían la factura, por favor?")
    card = eventually(hilo_stack, f"/v1/customers?email={address}", lambda body: body.get("current_conversation"))
    customer_id, conversation_id = card["customer"]["id"], card["current_conversation"]["id"]
    [theirs] = eventually(hilo_stack, f"/v1/customers/{customer_id}/timeline", lambda body: body["entries"])["entries"]

    sent = agent(hilo_stack, "POST", f"/v1/conversations/{conversation_id}/messages",
                 {"text": "Claro, aquí va el enlace de tu factura: https://tienda.example/f/4411"})  # fmt: skip

    assert (sent.status, sent.json()["channel"]) == (202, "email"), sent.body
    entry = outbound_entry(hilo_stack, customer_id, sent.json()["message_id"],
                           lambda e: e["message"]["status_history"][-1]["status"] == "sent")  # fmt: skip
    [mail] = [m for m in ses_backends[hilo_stack_account()]["us-east-1"].sent_messages
              if address in getattr(m, "destinations", [])]  # fmt: skip
    raw = mail.raw_data
    assert "Subject: Re: Factura del televisor" in raw
    assert f"In-Reply-To: <{theirs['message']['provider_message_id'].strip('<>')}>" in raw
    assert entry["message"]["provider_message_id"] == mail.id


def hilo_stack_account() -> str:
    from hilo.local.stack import ACCOUNT_ID

    return ACCOUNT_ID
