"""`hilo demo broken-tv`: story 1's inbound side played against a running `hilo dev`, then the unified thread and
the clerk's visit.

A customer calls the store about a broken TV and types their cédula in the IVR; then, on WhatsApp, sends the photo,
says the invoice is lost and taps "Cambio" (exchange). Every request is signed as the provider signs it, with the
secrets the running stack is configured with (read from its ConfigSecret in the embedded AWS). Then the demo asks
the agent API what an agent would see: one customer, one case, every channel on one timeline.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote

from hilo.local import providers
from hilo.local.stack import config_secret_name

STORE_NUMBER = "+5716017000"  # the store's line (Twilio) and WhatsApp number
WHATSAPP_NUMBER_ID = "1122334455"


class DemoError(Exception):
    """The demo could not run (stack not reachable, a webhook refused a request)."""


@dataclass(frozen=True)
class Target:
    api_url: str
    secrets: dict[str, str]


def read_config(aws_url: str, stack_name: str) -> dict[str, str]:
    """The configuration in force in the running twin (its ConfigSecret in the embedded moto)."""
    import boto3  # dev tooling only; boto3 is a dev dependency

    client = boto3.client("secretsmanager", endpoint_url=aws_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106  # fmt: skip
    try:
        return dict(json.loads(client.get_secret_value(SecretId=config_secret_name(stack_name))["SecretString"]))
    except Exception as error:
        raise DemoError(
            f"cannot read the configuration of stack '{stack_name}' at {aws_url}: is `hilo dev` running?"
        ) from error


def _send(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - local twin
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local twin
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError as error:
        raise DemoError(f"{url}: {error.reason}") from error


def _post(url: str, body: bytes, headers: dict[str, str], what: str) -> bytes:
    status, answer = _send("POST", url, body, headers)
    if status != 200:
        raise DemoError(f"{what}: {status} {answer[:200]!r}")
    return answer


def _twilio_voice(target: Target, path: str, params: dict[str, str], what: str) -> bytes:
    url = target.api_url + path
    body, headers = providers.twilio_form(url, params, target.secrets["HILO_TWILIO_AUTH_TOKEN"])
    return _post(url, body, headers, what)


def _whatsapp(target: Target, wa_id: str, at: int, kind: str, content: Any, what: str) -> None:
    message = {"from": wa_id, "id": "wamid." + secrets.token_hex(12), "timestamp": str(at), "type": kind, kind: content}
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": STORE_NUMBER.lstrip("+"),
             "phone_number_id": WHATSAPP_NUMBER_ID}, "contacts": [{"profile": {"name": "Ana María Rojas"},
             "wa_id": wa_id}], "messages": [message]}  # fmt: skip
    document = {"object": "whatsapp_business_account",
                "entry": [{"id": "102938", "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip
    body, headers = providers.meta_json(document, target.secrets["HILO_META_APP_SECRET"])
    _post(f"{target.api_url}/webhooks/whatsapp", body, headers, what)


def _agent_get(target: Target, path: str) -> tuple[int, Any]:
    status, body = _send("GET", target.api_url + path, None,
                         {"authorization": f"Bearer {target.secrets['HILO_DEV_TOKEN']}"})  # fmt: skip
    return status, json.loads(body) if body else None


def _local_now(target: Target) -> int:
    status, body = _send("GET", f"{target.api_url}/_dev/clock", None, {})
    if status != 200:
        raise DemoError(f"{target.api_url} is not a running `hilo dev` ({status})")
    return int(datetime.fromisoformat(json.loads(body)["now"]).timestamp())


def broken_tv(target: Target, out: TextIO, *, phone: str | None = None, cedula: str | None = None,
              timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """Play the story, print the unified thread, and return what the agent API answered.

    A fresh phone and cédula each run (unless given), so every run is a new customer of its own.
    """
    phone = phone or f"+57300{secrets.randbelow(10**7):07d}"
    cedula = cedula or f"10{secrets.randbelow(10**8):08d}"
    wa_id = phone.lstrip("+")
    call_sid = "CA" + secrets.token_hex(16)
    now = _local_now(target)
    say: Callable[[str], None] = lambda line: print(line, file=out, flush=True)  # noqa: E731

    say(f"1. {phone} calls the store about a broken TV (Twilio Voice)...")
    call = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": phone, "To": STORE_NUMBER,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}  # fmt: skip
    _twilio_voice(target, "/webhooks/twilio/voice", call, "the incoming call")
    say(f"   ...and types their cédula {cedula} in the IVR.")
    digits = {**call, "CallStatus": "in-progress", "Digits": cedula}
    _twilio_voice(target, "/webhooks/twilio/voice?step=id", digits, "the IVR digits")
    say("2. On WhatsApp they send the photo of the TV...")
    _whatsapp(target, wa_id, now + 120, "image", {"id": "1029384756", "mime_type": "image/jpeg",
              "sha256": "a" * 64, "caption": "Así llegó el televisor"}, "the photo")  # fmt: skip
    say("3. ...say the invoice is lost...")
    _whatsapp(target, wa_id, now + 180, "text", {"body": "Y no encuentro la factura 😞"}, "the text")
    say("4. ...and choose an exchange.")
    exchange = {"type": "button_reply", "button_reply": {"id": "exchange", "title": "Cambio"}}
    _whatsapp(target, wa_id, now + 240, "interactive", exchange, "the button")

    deadline = time.monotonic() + timeout
    card: Any = None
    while time.monotonic() < deadline:
        status, card = _agent_get(target, f"/v1/customers?phone={quote(phone)}")
        if status == 200 and len((card.get("current_conversation") or {}).get("channels", [])) >= 2:
            status, timeline = _agent_get(target, f"/v1/customers/{card['customer']['id']}/timeline")
            if status == 200 and len(timeline["entries"]) >= 5:
                break
        time.sleep(0.3)
    else:
        raise DemoError("the messages did not reach the customer's timeline in time (is ingest running?)")

    customer, current = card["customer"], card["current_conversation"]
    say("")
    say(f"What the agent sees — GET /v1/customers?phone={phone}")
    say(f"  customer      {customer['id']}  {customer.get('display_name') or ''}")
    say("  identities    " + ", ".join(f"{i['kind']} {i['value']}" for i in customer["identities"]))
    say(f"  open case     {current['id']} ({current['status']}) on {', '.join(current['channels'])}")
    say("  thread, oldest first:")
    for entry in reversed(timeline["entries"]):
        say(f"    {entry['occurred_at'][:19]}  {entry['channel']:<9} {entry.get('summary') or entry['kind']}")
    say("")
    # The IVR read the digits as a document of the caller's country (+57: a Colombian cédula); a Colombian store's
    # console names the document, so the lookup works whatever the stack's HILO_DEFAULT_REGION is.
    status, by_id = _agent_get(target, f"/v1/customers?national_id={cedula}&country=CO&document_type=CC")
    visit: Any = None
    if status == 200 and by_id["customer"]["id"] == customer["id"]:
        say(f"At the store, the clerk types the cédula {cedula} and finds the same customer and case,")
        visit = _record_visit(target, customer["id"], call_sid)
        say(f"  and records the visit on it: {visit['channel']} {visit['summary']} (case {visit['conversation_id']}).")
    else:
        say(f"At the store, the cédula {cedula} does not find them ({status}).")
    reply = _confirm_appointment(target, customer["id"], current["id"], call_sid, say, timeout=timeout)
    return {"card": card, "timeline": timeline, "by_national_id": (status, by_id), "visit": visit, "reply": reply}


def _confirm_appointment(
    target: Target, customer_id: str, conversation_id: str, key: str, say: Callable[[str], None], *, timeout: float
) -> Any:
    """The agent confirms the appointment in the conversation (it goes where the customer last wrote: WhatsApp) and
    the demo follows the message to ``read`` (locally the fake provider posts Meta's signed status callbacks)."""
    appointment = {"starts_at": "2026-03-07T15:00:00Z", "store": "Unicentro Bogotá"}
    body = json.dumps({"template_id": "cita_confirmada", "vars": appointment}).encode()
    headers = {"authorization": f"Bearer {target.secrets['HILO_DEV_TOKEN']}", "content-type": "application/json",
               "idempotency-key": f"demo-reply-{key}"}  # fmt: skip
    status, answer = _send("POST", f"{target.api_url}/v1/conversations/{conversation_id}/messages", body, headers)
    if status not in (200, 202):
        raise DemoError(f"the agent's reply: {status} {answer[:200]!r}")
    sent = json.loads(answer)
    say(f"The agent confirms the appointment: {sent['status']} on {sent['channel']} ({sent['message_id']})")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, timeline = _agent_get(target, f"/v1/customers/{customer_id}/timeline")
        entry = next((e for e in timeline.get("entries", []) if e.get("message_id") == sent["message_id"]), None)
        history = [step["status"] for step in ((entry or {}).get("message") or {}).get("status_history", [])]
        for step in history[len(seen) :]:
            say(f"  ...{step}")
        seen = history
        if history and history[-1] in ("read", "failed"):
            break
        time.sleep(0.3)
    return {**sent, "status_history": seen}


def _record_visit(target: Target, customer_id: str, key: str) -> Any:
    """The clerk's visit (POST /v1/customers/{id}/visits), keyed on the call so a re-run of the step is one visit."""
    body = json.dumps({"store": "Unicentro Bogotá", "summary": "Cambio del televisor; cita el sábado"}).encode()
    headers = {"authorization": f"Bearer {target.secrets['HILO_DEV_TOKEN']}", "content-type": "application/json",
               "idempotency-key": f"demo-visit-{key}"}  # fmt: skip
    status, answer = _send("POST", f"{target.api_url}/v1/customers/{customer_id}/visits", body, headers)
    if status not in (200, 201):
        raise DemoError(f"the store visit: {status} {answer[:200]!r}")
    return json.loads(answer)
