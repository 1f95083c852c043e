"""Message templates: loading and its errors, variant and locale fallback, the sandbox, filters, and SMS cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidInput, PermanentError
from shared.models.common import Channel
from shared.models.customer import ConsentPurpose, CustomerProfile
from shared.models.events import DomainEvent
from shared.outbound.rendering import (
    MessageTemplate,
    RenderContext,
    RenderFailed,
    TemplateCustomer,
    TemplateInvalid,
    load_template,
    render,
)
from shared.outbound.sms import SmsEncoding

ROOT = Path(__file__).resolve().parents[3]
SATURDAY_3PM_BOGOTA = "2026-03-07T20:00:00Z"


def template(variants: dict[str, Any], **fields: Any) -> MessageTemplate:
    return load_template({"id": "cita_confirmada", "purpose": "transactional", "variants": variants, **fields})


def one_text(text: str) -> MessageTemplate:
    return template({"default": {"es": {"text": text}}})


def context(**fields: Any) -> RenderContext:
    return RenderContext.model_validate({"customer": {"display_name": "Ana María Pérez"}, **fields})


def text_of(source: str, ctx: RenderContext | None = None, *, locale: str | None = None) -> str | None:
    return render(one_text(source), Channel.SMS, locale, ctx or context()).text


APPOINTMENT = {
    "default": {
        "es": {"text": "Hola {{ customer.first_name }}, tu cita: {{ vars.slot | datetime }}", "subject": "Tu cita"},
        "en": {
            "text": "Hi {{ customer.first_name }}, your appointment: {{ vars.slot | datetime }}",
            "subject": "Your appointment",
        },
    },
    "whatsapp": {
        "es": {
            "text": "¡Hola {{ customer.first_name }}! Te esperamos el {{ vars.slot | datetime }}.",
            "whatsapp_template": {
                "name": "cita_confirmada",
                "language": "es_MX",
                "parameters": ["customer.first_name", "vars.slot | datetime", "vars.store"],
            },
        }
    },
    "sms": {
        "es-CO": {"text": "Ana: cita {{ vars.slot | date }} en {{ vars.store }}"},
        "es": {"text": "Cita {{ vars.store }}"},
    },
}
SLOT = {"slot": SATURDAY_3PM_BOGOTA, "store": "Unicentro   12\n(piso 2)"}


# ---------------------------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    ("channel", "locale", "variant", "used_locale"),
    [
        (Channel.SMS, "es-CO", "sms", "es-CO"),  # exact match first
        (Channel.SMS, "es-MX", "sms", "es"),  # es-MX → es
        (Channel.SMS, "en", "sms", "es"),  # the sms variant has no en: its default locale, not the default variant
        (Channel.TELEGRAM, "en-US", "default", "en"),  # no telegram variant → default; en-US → en
        (Channel.TELEGRAM, "pt-BR", "default", "es"),  # pt-BR → pt → the template's default locale
        (Channel.WHATSAPP, "en", "whatsapp", "es"),  # channel first: only this variant can be an approved template
        (Channel.EMAIL, "en", "default", "en"),  # no email variant; the default one has subjects
    ],
)
def test_channel_then_locale_fallback(channel: Channel, locale: str, variant: str, used_locale: str) -> None:
    # Given
    appointment = template(APPOINTMENT)

    # When
    rendered = render(appointment, channel, locale, context(vars=SLOT))

    # Then
    assert (rendered.channel, rendered.variant, rendered.locale) == (channel, variant, used_locale)


def test_locale_defaults_to_the_customers() -> None:
    # Given
    appointment = template(APPOINTMENT)
    customer = {"display_name": "John Smith", "locale": "en-GB"}

    # When
    rendered = render(appointment, Channel.WEBCHAT, None, context(customer=customer, vars=SLOT))

    # Then
    assert rendered.locale == "en"
    assert rendered.text == "Hi John, your appointment: Saturday, March 7, 3:00 PM"


def test_a_template_without_default_locale_variant_can_name_another_default_locale() -> None:
    # Given
    english_first = template({"default": {"en": {"text": "Hi"}}}, default_locale="en")

    # When
    rendered = render(english_first, Channel.SMS, "es-CO", context())

    # Then
    assert (rendered.locale, rendered.text) == ("en", "Hi")


def test_email_falls_back_to_default_only_when_it_has_a_subject() -> None:
    # Given
    with_subject = template({"default": {"es": {"text": "Hola", "subject": "Aviso"}}})
    without = template({"default": {"es": {"text": "Hola"}}})

    # When
    rendered = render(with_subject, Channel.EMAIL, "es", context())

    # Then
    assert (rendered.variant, rendered.subject, rendered.text, rendered.html) == ("default", "Aviso", "Hola", None)
    assert with_subject.supports(Channel.EMAIL)
    assert not without.supports(Channel.EMAIL)
    with pytest.raises(RenderFailed, match=r"'cita_confirmada' has no variant for channel 'email'"):
        render(without, Channel.EMAIL, "es", context())


def test_a_channel_with_neither_its_variant_nor_a_default_is_refused() -> None:
    # Given
    sms_only = template({"sms": {"es": {"text": "Hola"}}})

    # When / Then
    assert sms_only.supports(Channel.SMS)
    assert not sms_only.supports(Channel.WHATSAPP)
    assert not sms_only.supports(Channel.VOICE)
    with pytest.raises(RenderFailed, match="no variant for channel 'whatsapp'") as excinfo:
        render(sms_only, Channel.WHATSAPP, "es", context())
    assert isinstance(excinfo.value, PermanentError)


def test_an_invalid_locale_argument_is_refused() -> None:
    # Given / When / Then
    with pytest.raises(InvalidInput, match="not a language tag"):
        render(one_text("Hola"), Channel.SMS, "español", context())


# ---------------------------------------------------------------------------------------- what is rendered


def test_whatsapp_variant_renders_free_text_and_the_approved_template_parameters() -> None:
    # Given
    appointment = template(APPOINTMENT)

    # When
    rendered = render(appointment, Channel.WHATSAPP, "es-CO", context(vars=SLOT))

    # Then
    assert rendered.text == "¡Hola Ana! Te esperamos el sábado 7 de marzo, 3:00 p. m.."
    assert rendered.whatsapp_template is not None
    assert rendered.whatsapp_template.name == "cita_confirmada"
    assert rendered.whatsapp_template.language == "es_MX"
    # Meta refuses parameters with line breaks, tabs or runs of spaces: they are made one line.
    assert rendered.whatsapp_template.parameters == ("Ana", "sábado 7 de marzo, 3:00 p. m.", "Unicentro 12 (piso 2)")
    assert rendered.sms is None


def test_whatsapp_template_alone_has_no_text() -> None:
    # Given
    only_template = template(
        {"whatsapp": {"es": {"whatsapp_template": {"name": "aviso", "language": "es", "parameters": []}}}}
    )

    # When
    rendered = render(only_template, Channel.WHATSAPP, "es", context())

    # Then
    assert rendered.text is None
    assert rendered.whatsapp_template is not None
    assert rendered.whatsapp_template.parameters == ()


def test_sms_render_reports_encoding_and_segments() -> None:
    # Given
    ready = one_text("¡Hola {{ customer.first_name }}! Tu televisor está listo")
    plain = one_text("¡Hola {{ customer.first_name }}! Tu televisor esta listo")

    # When
    accented = render(ready, Channel.SMS, "es", context())
    unaccented = render(plain, Channel.SMS, "es", context())

    # Then
    assert accented.sms is not None
    assert unaccented.sms is not None
    assert (accented.sms.encoding, accented.sms.non_gsm7, accented.sms.segments) == (SmsEncoding.UCS2, ("á",), 1)
    assert (unaccented.sms.encoding, unaccented.sms.units, unaccented.sms.segments) == (SmsEncoding.GSM7, 34, 1)
    assert render(ready, Channel.TELEGRAM, "es", context()).sms is None


def test_rendered_text_is_composed_and_trimmed() -> None:
    # Given: a name typed with a combining accent ("e" + U+0301), and template whitespace around the text
    ctx = context(vars={"name": "Jose\u0301"})

    # When
    rendered = render(one_text("\n  Hola {{ vars.name }}  \n"), Channel.SMS, "es", ctx)

    # Then: NFC-composed é is GSM-7, so the message is not needlessly UCS-2
    assert rendered.text == "Hola José"
    assert rendered.sms is not None
    assert rendered.sms.encoding == SmsEncoding.GSM7


def test_email_subject_is_one_line() -> None:
    # Given: a value with a line break, which in a subject would be a header injection
    mail = template({"email": {"es": {"subject": "Pedido {{ vars.ref }}", "text": "Hola"}}})

    # When
    rendered = render(mail, Channel.EMAIL, "es", context(vars={"ref": "A1\r\nBcc: x@y.co"}))

    # Then
    assert rendered.subject == "Pedido A1 Bcc: x@y.co"


def test_a_field_that_renders_empty_is_refused() -> None:
    # Given
    blank = one_text("{% if vars.show %}Hola{% endif %}")

    # When / Then
    with pytest.raises(RenderFailed, match=r"variant default/es, field text: rendered empty"):
        render(blank, Channel.SMS, "es", context(vars={"show": False}))


def test_context_from_domain_objects() -> None:
    # Given
    at = datetime(2026, 3, 1, tzinfo=UTC)
    profile = CustomerProfile(
        id="cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2",
        display_name="CARLOS ANDRÉS GÓMEZ",
        locale="es-CO",
        time_zone="America/Mexico_City",
        attributes={"tier": "oro"},
        created_at=at,
        updated_at=at,
    )
    event = DomainEvent.new("appointment.booked", source="crm", correlation_id="c-1", data={"at": SATURDAY_3PM_BOGOTA})

    # When
    ctx = RenderContext.of(profile, event=event, vars={"store": "Andino"})
    rendered = render(
        one_text("{{ customer.first_name }} ({{ customer.attributes.tier }}): {{ event.at | time }}, {{ vars.store }}"),
        Channel.SMS,
        None,
        ctx,
    )

    # Then: dates in the customer's own time zone (Mexico City is UTC-6, Bogotá UTC-5)
    assert rendered.text == "Carlos (oro): 2:00 p. m., Andino"


@pytest.mark.parametrize(
    ("display_name", "first_name"),
    [
        ("Ana María Pérez", "Ana"),
        ("ANA MARÍA PÉREZ", "Ana"),
        ("josé 🌸", "José"),
        ("María-José Ruiz", "María-José"),
        ("McKay", "McKay"),
        ("🌸 Lucía", "Lucía"),
        ("+57 300 123 4567", None),
        (None, None),
    ],
)
def test_first_name_is_derived_from_the_display_name(display_name: str | None, first_name: str | None) -> None:
    # Given / When / Then
    assert TemplateCustomer(display_name=display_name).first_name == first_name


# ------------------------------------------------------------------------------------------ missing values


@pytest.mark.parametrize(
    ("source", "event", "missing"),
    [
        ("Tu cita es el {{ vars.fecha }}", {}, "'vars.fecha' is undefined"),
        ("Pedido {{ event.order.id }}", {}, "'event.order' is undefined"),
        ("Pedido {{ event.order.id }}", {"order": {"total": 10}}, "'event.order.id' is undefined"),
        ("Hola {{ customer.first_name }}", {}, "'customer.first_name' is undefined"),
        ("Nivel {{ customer.attributes.tier }}", {}, "'customer.attributes.tier' is undefined"),
        # through a filter too: the value is named, not its type
        ("Cita el {{ vars.fecha | datetime }}", {}, "'vars.fecha' is undefined"),
        ("Total {{ event.total | money('COP') }}", {}, "'event.total' is undefined"),
    ],
)
def test_a_missing_value_is_an_error_naming_it(source: str, event: dict[str, Any], missing: str) -> None:
    # Given: a customer without a display name, and the event given
    ctx = RenderContext(event=event)

    # When / Then
    with pytest.raises(RenderFailed, match=f"field text: {missing}") as excinfo:
        render(one_text(source), Channel.SMS, "es", ctx)
    assert excinfo.value.details == [
        {"template": "cita_confirmada", "variant": "default/es", "field": "text", "message": missing}
    ]


def test_null_counts_as_missing_and_default_gives_a_fallback() -> None:
    # Given
    ctx = RenderContext(vars={"name": None})

    # When / Then
    assert text_of("Hola {{ vars.name | default('cliente') }}", ctx) == "Hola cliente"
    assert text_of("Hola {{ customer.first_name | default('cliente') }}", ctx) == "Hola cliente"
    with pytest.raises(RenderFailed, match=r"'vars\.name' is undefined"):
        text_of("Hola {{ vars.name }}", ctx)


def test_data_keys_win_over_mapping_methods() -> None:
    # Given: an order whose data has "items", "keys" and "get", as real orders do
    ctx = context(event={"items": [{"sku": "TV-55"}, {"sku": "HDMI"}], "keys": 2, "get": "hoy"})

    # When
    text = text_of("{{ event.items | map(attribute='sku') | join(', ') }} / {{ event.keys }} / {{ event.get }}", ctx)

    # Then
    assert text == "TV-55, HDMI / 2 / hoy"


def test_printing_a_whole_object_is_refused() -> None:
    # Given / When / Then
    with pytest.raises(RenderFailed, match="a whole object is printed"):
        text_of("{{ customer }}")


# ---------------------------------------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "calls are not allowed"),
        ("{{ customer.__class__ }}", "'__class__': names starting with '_' are private"),
        ("{{ vars.x.__class__.__mro__ }}", "'__mro__': names starting with '_' are private"),
        ("{{ vars['__class__'] }}", "'__class__': names starting with '_' are private"),
        ("{{ '{0.__class__}'.format(customer) }}", "calls are not allowed"),
        ("{{ vars.name.upper() }}", "calls are not allowed"),
        ("{{ range(10) }}", "unknown variable 'range'"),
        ("{{ self }}", "unknown variable 'self'"),
        ("{{ cycler }}", "unknown variable 'cycler'"),
        ("{% include 'secret.txt' %}", "include, import and extends are not allowed"),
        ("{% extends 'base.html' %}", "include, import and extends are not allowed"),
        ("{% set _x = 1 %}{{ vars.a }}", "'_x': names starting with '_' are private"),
        ("{{ 9 ** 9 ** 9 }}", r"the \*\* operator is not allowed"),
        ("{{ vars.x | attr('__class__') }}", "No filter named 'attr'"),
        ("{{ vars.x | center(999999999) }}", "No filter named 'center'"),
        ("{{ vars.x | format(1) }}", "No filter named 'format'"),
    ],
)
def test_sandbox_refuses_escapes_when_the_template_is_loaded(source: str, reason: str) -> None:
    # Given / When / Then
    with pytest.raises(TemplateInvalid, match=reason):
        one_text(source)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # The key is data, so only the running sandbox can see it is a dunder.
        ("{{ vars.text[vars.key] }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ customer[vars.key] }}", "access to attribute '__class__' of '_Data' object is unsafe"),
        ("{{ (vars.text | list)[vars.key] }}", "access to attribute '__class__' of 'list' object is unsafe"),
        ("{{ vars.text * 1000000000 }}", "repeating text or lists with \\* is not allowed"),
        ("{{ vars.big * vars.text }}", "repeating text or lists with \\* is not allowed"),
        ("{{ vars.fmt % vars.big }}", "% formatting is not allowed"),
    ],
)
def test_sandbox_refuses_escapes_while_rendering(source: str, reason: str) -> None:
    # Given
    ctx = context(vars={"text": "hola", "key": "__class__", "big": 10**9, "fmt": "%0999999999d"})

    # When / Then
    with pytest.raises(RenderFailed, match=reason):
        text_of(source, ctx)


def test_runaway_output_is_cut_off() -> None:
    # Given: 70,000 characters from a small template
    ctx = context(vars={"rows": list(range(7_000))})

    # When / Then
    with pytest.raises(RenderFailed, match="renders to more than 65,536 characters"):
        text_of("{% for row in vars.rows %}0123456789{% endfor %}", ctx)


def test_arithmetic_and_plain_filters_still_work() -> None:
    # Given
    ctx = context(vars={"price": 4, "qty": 3, "items": ["tv", "soporte"]})

    # When
    text = text_of("{{ vars.price * vars.qty }} · {{ vars['items'] | join(' + ') | upper }} · {{ 7 % 3 }}", ctx)

    # Then
    assert text == "12 · TV + SOPORTE · 1"


def test_autoescape_in_email_html_only() -> None:
    # Given
    mail = template(
        {
            "email": {
                "es": {
                    "subject": "Nota de {{ vars.note }}",
                    "text": "Nota: {{ vars.note }}",
                    "html": "<p>Nota: {{ vars.note }}</p>",
                }
            },
            "sms": {"es": {"text": "Nota: {{ vars.note }}"}},
        }
    )
    ctx = context(vars={"note": "<b>Ana & Co</b>"})

    # When
    email = render(mail, Channel.EMAIL, "es", ctx)
    sms = render(mail, Channel.SMS, "es", ctx)

    # Then
    assert email.html == "<p>Nota: &lt;b&gt;Ana &amp; Co&lt;/b&gt;</p>"
    assert email.text == "Nota: <b>Ana & Co</b>"
    assert email.subject == "Nota de <b>Ana & Co</b>"
    assert sms.text == "Nota: <b>Ana & Co</b>"


# ------------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("source", "value", "locale", "expected"),
    [
        ("{{ vars.v | money('COP') }}", 1250000, "es", "$ 1.250.000"),
        ("{{ vars.v | money('COP') }}", 1250000, "en", "COP 1,250,000"),
        ("{{ vars.v | money('COP') }}", "99999.5", "es", "$ 100.000"),  # half-up, not banker's rounding
        ("{{ vars.v | money('COP', decimals=2) }}", 1250.5, "es", "$ 1.250,50"),
        ("{{ vars.v | money('MXN') }}", 1250.5, "es", "$1,250.50"),
        ("{{ vars.v | money('ARS') }}", -1250.5, "es", "-$ 1.250,50"),
        ("{{ vars.v | money('CLP') }}", 15990, "es", "$15.990"),
        ("{{ vars.v | money('PEN') }}", 89.9, "es", "S/ 89.90"),
        ("{{ vars.v | money('EUR') }}", 1250, "es", "1.250,00 €"),
        ("{{ vars.v | money('USD') }}", 0.125, "en", "$0.13"),
        ("{{ vars.v | datetime }}", SATURDAY_3PM_BOGOTA, "es", "sábado 7 de marzo, 3:00 p. m."),
        ("{{ vars.v | datetime }}", SATURDAY_3PM_BOGOTA, "en", "Saturday, March 7, 3:00 PM"),
        ("{{ vars.v | datetime(year=true) }}", SATURDAY_3PM_BOGOTA, "es", "sábado 7 de marzo de 2026, 3:00 p. m."),
        ("{{ vars.v | datetime }}", "2026-12-31T05:30:00+00:00", "es", "jueves 31 de diciembre, 12:30 a. m."),
        ("{{ vars.v | datetime }}", "2026-01-01T05:30:00+00:00", "en", "Thursday, January 1, 12:30 AM"),
        ("{{ vars.v | time }}", "2026-03-07T17:05:00Z", "es", "12:05 p. m."),
        ("{{ vars.v | date }}", "2026-03-08T03:00:00Z", "es", "sábado 7 de marzo"),  # still the 7th in Bogotá
        ("{{ vars.v | date(year=true) }}", "2026-09-16", "es", "miércoles 16 de septiembre de 2026"),
        ("{{ vars.v | date }}", "2026-09-16", "en", "Wednesday, September 16"),
    ],
)
def test_money_and_date_filters_in_spanish_and_english(source: str, value: Any, locale: str, expected: str) -> None:
    # Given: the customer's time zone is unknown, so dates show in the default, America/Bogota
    bilingual = template({"default": {"es": {"text": source}, "en": {"text": source}}})

    # When
    rendered = render(bilingual, Channel.SMS, locale, context(vars={"v": value}))

    # Then
    assert rendered.text == expected


@pytest.mark.parametrize(
    ("source", "value", "reason"),
    [
        ("{{ vars.v | datetime }}", "2026-03-07T15:00:00", "has no time zone"),
        ("{{ vars.v | datetime }}", "el sábado", "not an ISO-8601 date and time"),
        ("{{ vars.v | money('COP') }}", "mil pesos", "money needs a number"),
        ("{{ vars.v | money('COP') }}", True, "money needs a number"),
        ("{{ vars.v | money(vars.v) }}", "XYZ", "unknown currency 'XYZ'"),
    ],
)
def test_filters_refuse_bad_values(source: str, value: Any, reason: str) -> None:
    # Given / When / Then
    with pytest.raises(RenderFailed, match=reason):
        text_of(source, context(vars={"v": value}))


# ---------------------------------------------------------------------------------------- load-time checks


@pytest.mark.parametrize(
    ("variants", "variant", "field", "reason"),
    [
        ({"fax": {"es": {"text": "Hola"}}}, "fax", None, "unknown channel 'fax'"),
        ({"voice": {"es": {"text": "Hola"}}}, "voice", None, "channel 'voice' carries no written messages"),
        ({"sms": {"en": {"text": "Hi"}}}, "sms", None, "variant 'sms' has no 'es' locale"),
        ({"sms": {"es": {"text": "Hola {{ nombre"}}}, "sms/es", "text", "template syntax error \\(line 1\\)"),
        (
            {"email": {"es": {"subject": "Hola", "text": "x", "html": "<p>{% if %}</p>"}}},
            "email/es",
            "html",
            "template syntax error",
        ),
        ({"sms": {"es": {"text": "Hola {{ cliente.nombre }}"}}}, "sms/es", "text", "unknown variable 'cliente'"),
        ({"sms": {"es": {"text": "{{ vars.x | moneda('COP') }}"}}}, "sms/es", "text", "No filter named 'moneda'"),
        ({"sms": {"es": {"text": "{{ vars.x | money('PESOS') }}"}}}, "sms/es", "text", "unknown currency 'PESOS'"),
        ({"sms": {"es": {"text": "Hola", "subject": "x"}}}, "sms/es", "subject", "Extra inputs are not permitted"),
        ({"email": {"es": {"text": "Hola"}}}, "email/es", "subject", "Field required"),
        ({"whatsapp": {"es": {}}}, "whatsapp/es", None, "needs text, whatsapp_template, or both"),
        (
            {"whatsapp": {"es": {"whatsapp_template": {"name": "Cita Confirmada", "language": "es"}}}},
            "whatsapp/es",
            "whatsapp_template.name",
            "should match pattern",
        ),
        (
            {"whatsapp": {"es": {"whatsapp_template": {"name": "cita", "language": "es", "parameters": ["{{ x }}"]}}}},
            "whatsapp/es",
            "whatsapp_template.parameters.0",
            "template syntax error",
        ),
        (
            {
                "whatsapp": {
                    "es": {"whatsapp_template": {"name": "cita", "language": "es", "parameters": ["a) }}{{ (b"]}}
                }
            },
            "whatsapp/es",
            "whatsapp_template.parameters.0",
            "must be one expression",
        ),
        ({"sms": {"español": {"text": "Hola"}}}, "sms/español", "(locale)", "locale must be a language tag"),
    ],
)
def test_load_errors_name_template_variant_and_field(
    variants: dict[str, Any], variant: str, field: str | None, reason: str
) -> None:
    # Given / When
    with pytest.raises(TemplateInvalid) as excinfo:
        template(variants)

    # Then
    error = excinfo.value
    assert error.message.startswith("template 'cita_confirmada': ")
    assert f"variant {variant}" in error.message
    if field is not None:
        assert f"field {field}: " in error.message
    matching = [d for d in error.details if d["variant"] == variant and d["field"] == field]
    assert matching, error.details
    assert any(re.search(reason, d["message"]) for d in matching), matching


def test_load_errors_outside_variants_name_the_field() -> None:
    # Given / When
    with pytest.raises(TemplateInvalid) as excinfo:
        load_template({"id": "promo", "purpose": "spam", "variants": {"default": {"es": {"text": "Hola"}}}})

    # Then
    assert excinfo.value.message.startswith("template 'promo': field purpose: ")
    assert excinfo.value.details[0]["field"] == "purpose"


def test_load_from_json_text() -> None:
    # Given
    source = json.dumps(
        {
            "id": "stock_disponible",
            "name": "Producto disponible",
            "purpose": "marketing",
            "variants": {"default": {"es": {"text": "¡Volvió tu talla! {{ vars.url }}"}}},
        }
    )

    # When
    loaded = load_template(source)

    # Then
    assert (loaded.id, loaded.purpose, loaded.default_locale) == ("stock_disponible", ConsentPurpose.MARKETING, "es")
    with pytest.raises(TemplateInvalid, match="not valid JSON"):
        load_template("{id: stock")


# ---------------------------------------------------------------------------------------------- cold start


def test_importing_the_module_does_not_import_jinja() -> None:
    # Given: a fresh interpreter, as a Lambda cold start
    code = (
        "import sys, shared.outbound, shared.outbound.rendering, shared.outbound.sms\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 imported at module load'\n"
    )

    # When
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)

    # Then
    assert result.returncode == 0, result.stderr
