"""Outbound messaging: what Hilo may send, to whom, on which channel, and how it reads.

Modules (import the one you need; this package imports nothing, so a function pays at cold start only for what
it uses):

- ``shared.outbound.rendering``: message templates with per-channel and per-locale variants, validated at load
  time and rendered in a sandbox (Jinja2, imported on first render).
- ``shared.outbound.sms``: GSM-7 / UCS-2 encoding and segment count of an SMS body.
- ``shared.outbound.consent``: opt-out, opt-in and help keywords on inbound text, and the consents they record.
- ``shared.outbound.policy``: the send decision (consent per channel and purpose, quiet hours, the WhatsApp
  24-hour window).
"""
