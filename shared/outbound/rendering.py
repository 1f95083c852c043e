"""Message templates: per-channel and per-locale variants, checked when loaded, rendered in a sandbox.

Templates are written by the company's staff, not by developers, so they are data, and data must not run code. They
use Jinja2 syntax (``Hola {{ customer.first_name }}``) in an immutable sandbox with these guarantees, checked first
when a template is loaded (so a mistake is reported once, naming the template, the variant and the field, not at
3 a.m. for each customer) and again while rendering:

- a template sees only ``customer``, ``event`` and ``vars``; a missing value is an error naming it, never an empty
  string; a null counts as missing (``{{ customer.first_name | default('cliente') }}`` gives a fallback);
- no calls at all (``x.format(...)``, ``range(...)``, macros): formatting is done with filters;
- no attribute or key starting with ``_`` (the ``__class__.__mro__`` road to Python's internals), no ``**``, no
  repeating text or lists with ``*``, no ``%`` formatting, no ``include``/``import``/``extends``, no filesystem;
- only an allow-list of filters, without the ones that can build huge strings from a number (``center``,
  ``indent``, ``format``...); and a cap on the size of what a template renders;
- HTML e-mail bodies are autoescaped; plain text (SMS, chat, e-mail text, subjects) is not.

Jinja2 is imported only when a template is first loaded or rendered (about 25-30 ms on the reference box once
pydantic is loaded): modules that import this one to type a message, but never render, do not pay for it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, Final, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from shared.errors import InvalidInput, PermanentError
from shared.models.common import Channel
from shared.models.customer import (
    AttributeKey,
    AttributeValue,
    ConsentPurpose,
    CustomerProfile,
    Locale,
    TimeZoneName,
)
from shared.models.events import DomainEvent
from shared.models.outbound import WhatsAppTemplateMessage
from shared.outbound.sms import SmsInfo, measure_sms

if TYPE_CHECKING:
    from jinja2 import Environment, Template
    from jinja2.nodes import Template as TemplateNode

#: The names a template can use; anything else is refused when the template is loaded.
TEMPLATE_VARIABLES: Final = frozenset({"customer", "event", "vars"})
#: The key of the variant used when a channel has none of its own.
DEFAULT_VARIANT: Final = "default"
#: Where dates are shown when the customer's time zone is unknown (Hilo's default region is Colombia).
DEFAULT_TIME_ZONE: Final = "America/Bogota"

_MAX_SOURCE: Final = 20_000
# What one field may render to: a text part's limit (shared.models.message.TextPart); an HTML body is bigger.
_MAX_TEXT_OUTPUT: Final = 65_536
_MAX_HTML_OUTPUT: Final = 1_000_000
_SETTINGS_VAR: Final = "_hilo"  # not nameable by templates (leading underscore); carries locale and time zone
# Built-in Jinja filters templates may use: none of them calls back into Python objects or turns a small number
# into a huge string (center, indent, wordwrap, format, filesizeformat... are left out on purpose).
_BUILTIN_FILTERS: Final = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "int", "items",
        "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "round",
        "safe", "select", "selectattr", "sort", "string", "striptags", "sum", "title", "trim", "truncate", "unique",
        "upper", "urlencode", "wordcount",
    }
)  # fmt: skip
_WHITESPACE_RE: Final = re.compile(r"\s+")
_FIRST_NAME_RE: Final = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")


class TemplateInvalid(InvalidInput):
    """A template breaks the format or the sandbox's rules; ``details`` names template, variant and field."""

    code = "template_invalid"


class RenderFailed(PermanentError):
    """A template could not be rendered for this message (missing value, refused operation, no variant).

    Permanent: rendering the same template with the same data fails the same way, so the message is parked with
    this reason, never retried.
    """

    code = "render_failed"


# --------------------------------------------------------------------------------------------------- the engine


@dataclass(frozen=True, slots=True)
class _Formatting:
    """How filters format for one render: the variant's language and the customer's time zone."""

    language: str
    zone: ZoneInfo


class _Data(Mapping[str, Any]):
    """JSON-like data as a template sees it: read-only, nulls dropped, and named by its path for error messages."""

    __slots__ = ("_items", "_path")

    def __init__(self, items: Mapping[str, Any], path: str) -> None:
        self._path = path
        self._items = {key: _freeze(value, f"{path}.{key}") for key, value in items.items() if value is not None}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _freeze(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return _Data(value, path)
    if isinstance(value, list | tuple):
        return tuple(_freeze(item, f"{path}[{index}]") for index, item in enumerate(value))
    return value


def _finalize(value: Any) -> Any:
    # Printing None would put "None" in front of a customer; printing a whole mapping, Python's repr of it.
    if value is None:
        raise ValueError("a value printed is null; give a fallback with | default('...')")
    if isinstance(value, Mapping):
        raise ValueError("a whole object is printed; print one of its fields")
    return value


@functools.cache
def _environment(html: bool) -> Environment:
    """The sandboxed environment, one for HTML (autoescaped) and one for text; built once per process."""
    from jinja2 import StrictUndefined, Undefined, pass_context
    from jinja2.exceptions import SecurityError
    from jinja2.filters import FILTERS
    from jinja2.runtime import Context
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Sandbox(ImmutableSandboxedEnvironment):
        # Intercepted operators are also never constant-folded at compile time, so `'a' * 10**9` is refused, not run.
        intercepted_binops = frozenset({"*", "**", "%"})

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                raise SecurityError("the ** operator is not allowed in templates")
            if operator == "%" and isinstance(left, str):
                raise SecurityError("% formatting is not allowed in templates; use a filter")
            if operator == "*" and (isinstance(left, str | tuple | list) or isinstance(right, str | tuple | list)):
                raise SecurityError("repeating text or lists with * is not allowed in templates")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            raise SecurityError("templates may not call functions or methods; use a filter")

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, _Data):
                return self._lookup(obj, attribute)
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(obj, _Data) and isinstance(argument, str):
                return self._lookup(obj, argument)
            return super().getitem(obj, argument)

        def _lookup(self, data: _Data, key: str) -> Any:
            # Keys only, never the mapping's methods: `event.items` is the event's "items", not Mapping.items.
            if key.startswith("_"):
                return self.unsafe_undefined(data, key)
            if key in data:
                return data[key]
            return self.undefined(obj=data, name=key, hint=f"'{data._path}.{key}' is undefined")

    def formatting(context: Context) -> _Formatting:
        value = context.get(_SETTINGS_VAR)
        if not isinstance(value, _Formatting):  # only reachable if rendered outside render()
            raise ValueError("formatting settings are missing")
        return value

    def defined(value: Any) -> Any:
        # A missing value reaches a filter as an Undefined: name the value ("'vars.fecha' is undefined"), not the type.
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value

    @pass_context
    def money(context: Context, amount: Any, currency: str, decimals: int | None = None) -> str:
        return _format_money(defined(amount), currency, decimals, formatting(context).language)

    @pass_context
    def datetime_filter(context: Context, value: Any, year: bool = False) -> str:
        settings = formatting(context)
        moment = _to_datetime(defined(value), settings.zone)
        day = _day_text(moment.date(), settings.language, year=year)
        return f"{day}, {_time_text(moment, settings.language)}"

    @pass_context
    def date_filter(context: Context, value: Any, year: bool = False) -> str:
        settings = formatting(context)
        return _day_text(_to_date(defined(value), settings.zone), settings.language, year=year)

    @pass_context
    def time_filter(context: Context, value: Any) -> str:
        settings = formatting(context)
        return _time_text(_to_datetime(defined(value), settings.zone), settings.language)

    environment = _Sandbox(
        autoescape=html,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    environment.globals.clear()  # range, lipsum, cycler, dict...: nothing to call, so nothing to offer
    environment.filters = {name: FILTERS[name] for name in _BUILTIN_FILTERS}
    environment.filters.update(money=money, datetime=datetime_filter, date=date_filter, time=time_filter)
    return environment


def _refusal(ast: TemplateNode) -> str | None:
    """The first thing in ``ast`` the sandbox refuses, as a message for the template's author; None if none."""
    from jinja2 import meta, nodes

    unknown = sorted(meta.find_undeclared_variables(ast) - TEMPLATE_VARIABLES)
    if unknown:
        return f"unknown variable {unknown[0]!r}; a template sees only customer, event and vars"
    for node in ast.find_all(nodes.Node):
        where = f" (line {node.lineno})"
        if isinstance(node, nodes.Call):
            return "calls are not allowed in templates (x(), x.format(...)); use a filter, e.g. {{ x | upper }}" + where
        if isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            return "include, import and extends are not allowed: a template stands alone" + where
        if isinstance(node, nodes.Pow):
            return "the ** operator is not allowed in templates" + where
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        elif isinstance(node, nodes.Name):
            name = node.name
            if name == "self":  # Jinja's reference to the template itself, not a variable a template needs
                return "unknown variable 'self'; a template sees only customer, event and vars" + where
        if name is not None and name.startswith("_"):
            return f"{name!r}: names starting with '_' are private and not allowed in templates" + where
        if isinstance(node, nodes.Filter) and node.name == "money" and node.args:
            currency = node.args[0]
            if isinstance(currency, nodes.Const) and currency.value not in _CURRENCIES:
                return f"unknown currency {currency.value!r} for money; known: {', '.join(_CURRENCIES)}" + where
    return None


@functools.lru_cache(maxsize=1024)
def _compile(source: str, html: bool, expression: bool = False) -> Template:
    """Parse, check and compile one template field; cached, so loading a template also warms its renders."""
    from jinja2 import TemplateSyntaxError, nodes

    environment = _environment(html)
    text = "{{ (" + source + ") }}" if expression else source
    try:
        ast = environment.parse(text)
        if expression and not (
            len(ast.body) == 1 and isinstance(ast.body[0], nodes.Output) and len(ast.body[0].nodes) == 1
        ):
            raise ValueError("must be one expression, e.g. customer.first_name or event.total | money('COP')")
        refusal = _refusal(ast)
        if refusal is not None:
            raise ValueError(refusal)
        return environment.from_string(ast)
    except TemplateSyntaxError as exc:  # TemplateAssertionError too: an unknown filter is found while compiling
        line = "" if expression else f" (line {exc.lineno})"
        raise ValueError(f"template syntax error{line}: {exc.message}") from None


def _check_text(source: str) -> str:
    _compile(source, False)
    return source


def _check_html(source: str) -> str:
    _compile(source, True)
    return source


def _check_expression(source: str) -> str:
    _compile(source, False, expression=True)
    return source


#: Template text (SMS, chat, e-mail text and subject), checked against the sandbox's rules when loaded.
TextSource = Annotated[str, StringConstraints(min_length=1, max_length=_MAX_SOURCE), AfterValidator(_check_text)]
#: An e-mail's HTML body: the same rules, and every printed value is HTML-escaped.
HtmlSource = Annotated[str, StringConstraints(min_length=1, max_length=_MAX_SOURCE * 10), AfterValidator(_check_html)]
#: One Jinja expression (no ``{{ }}``), e.g. ``event.data.total | money('COP')``.
Expression = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(_check_expression),
]


# ------------------------------------------------------------------------------------------------------ filters

_ES_DAYS: Final = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
_ES_MONTHS: Final = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
_EN_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Currency:
    symbol: str
    decimals: int
    group: str
    point: str
    pattern: str  # "{symbol} {number}", "{symbol}{number}" or "{number} {symbol}"


# How each currency is written at home; Spanish-language renders follow that, English ones write "COP 1,250,000".
_CURRENCIES: Final = {
    "COP": _Currency("$", 0, ".", ",", "{symbol} {number}"),
    "MXN": _Currency("$", 2, ",", ".", "{symbol}{number}"),
    "ARS": _Currency("$", 2, ".", ",", "{symbol} {number}"),
    "CLP": _Currency("$", 0, ".", ",", "{symbol}{number}"),
    "PEN": _Currency("S/", 2, ",", ".", "{symbol} {number}"),
    "UYU": _Currency("$", 2, ".", ",", "{symbol} {number}"),
    "BRL": _Currency("R$", 2, ".", ",", "{symbol} {number}"),
    "USD": _Currency("US$", 2, ",", ".", "{symbol} {number}"),
    "EUR": _Currency("€", 2, ".", ",", "{number} {symbol}"),
}


def _format_money(amount: Any, currency: str, decimals: int | None, language: str) -> str:
    spec = _CURRENCIES.get(currency)
    if spec is None:
        raise ValueError(f"unknown currency {currency!r} for money; known: {', '.join(_CURRENCIES)}")
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal | str):
        raise TypeError(f"money needs a number, got {type(amount).__name__}")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"money needs a number, got {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"money needs a finite number, got {amount!r}")
    places = spec.decimals if decimals is None else decimals
    if not 0 <= places <= 4:
        raise ValueError("money's decimals must be between 0 and 4")
    # Half-up, as shops and banks round, not Python's default banker's rounding.
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    plain = f"{abs(rounded):,.{places}f}"  # "1,250,000.50"
    sign = "-" if rounded < 0 else ""
    if language == "en":
        prefix = {"USD": "$", "EUR": "€"}.get(currency, f"{currency} ")
        return f"{sign}{prefix}{plain}"
    number = plain.translate(str.maketrans(",.", spec.group + spec.point))
    return sign + spec.pattern.format(symbol=spec.symbol, number=number)


def _to_datetime(value: Any, zone: ZoneInfo) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 date and time: {value!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"needs a date and time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone; send an offset or 'Z' (e.g. 2026-03-07T20:00:00Z)")
    return value.astimezone(zone)


def _to_date(value: Any, zone: ZoneInfo) -> date:
    # A plain date ("2026-03-07", a birthday, a due date) is a calendar day: no time zone to apply.
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 date: {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return _to_datetime(value, zone).date()


def _day_text(day: date, language: str, *, year: bool) -> str:
    if language == "en":
        text = f"{_EN_DAYS[day.weekday()]}, {_EN_MONTHS[day.month - 1]} {day.day}"
        return f"{text}, {day.year}" if year else text
    text = f"{_ES_DAYS[day.weekday()]} {day.day} de {_ES_MONTHS[day.month - 1]}"
    return f"{text} de {day.year}" if year else text


def _time_text(moment: datetime, language: str) -> str:
    hour = moment.hour % 12 or 12
    if language == "en":
        return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    # The RAE's abbreviations, as Latin-American messages write a 12-hour clock.
    return f"{hour}:{moment.minute:02d} {'a. m.' if moment.hour < 12 else 'p. m.'}"


# ------------------------------------------------------------------------------------------------------- models


class _Variant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextVariant(_Variant):
    """A short text: SMS, RCS, web chat, Messenger, Instagram, Telegram."""

    text: TextSource


class DefaultVariant(_Variant):
    """Used for any channel without a variant of its own; ``subject`` lets e-mail fall back to it too."""

    text: TextSource
    subject: TextSource | None = None


class EmailVariant(_Variant):
    """A rich e-mail: ``text`` is the plain-text part every client can show; ``html`` is optional."""

    subject: TextSource
    text: TextSource
    html: HtmlSource | None = None


class WhatsAppTemplateRef(BaseModel):
    """An approved Meta message template, the only thing WhatsApp delivers outside the 24-hour window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The name registered with Meta (lower-case letters, digits and underscores).
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,512}$")]
    #: Meta's language code for that template: ``es``, ``es_MX``, ``en_US``...; it must match exactly.
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")]
    #: One expression per body placeholder ``{{1}}``, ``{{2}}``... in order.
    parameters: tuple[Expression, ...] = Field(default=(), max_length=100)


class WhatsAppVariant(_Variant):
    """Free-form ``text`` (inside the 24-hour window), an approved ``whatsapp_template`` (outside it), or both."""

    text: TextSource | None = None
    whatsapp_template: WhatsAppTemplateRef | None = None

    @model_validator(mode="after")
    def _has_content(self) -> Self:
        if self.text is None and self.whatsapp_template is None:
            raise ValueError("a whatsapp variant needs text, whatsapp_template, or both")
        return self


#: Channels a message template can be written for; voice and in-store carry no written messages.
TEMPLATE_CHANNELS: Final = (
    Channel.SMS,
    Channel.WHATSAPP,
    Channel.RCS,
    Channel.WEBCHAT,
    Channel.EMAIL,
    Channel.MESSENGER,
    Channel.INSTAGRAM,
    Channel.TELEGRAM,
)
_VARIANT_KEYS: Final = (DEFAULT_VARIANT, *(channel.value for channel in TEMPLATE_CHANNELS))


class _VariantError(ValueError):
    """A template-level problem that belongs to one variant, so ``load_template`` can name it in ``details``."""

    def __init__(self, message: str, *, variant: str) -> None:
        super().__init__(message)
        self.variant = variant


class Variants(BaseModel):
    """A template's variants: per channel (or ``default``), then per locale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: dict[Locale, DefaultVariant] | None = None
    sms: dict[Locale, TextVariant] | None = None
    whatsapp: dict[Locale, WhatsAppVariant] | None = None
    rcs: dict[Locale, TextVariant] | None = None
    webchat: dict[Locale, TextVariant] | None = None
    email: dict[Locale, EmailVariant] | None = None
    messenger: dict[Locale, TextVariant] | None = None
    instagram: dict[Locale, TextVariant] | None = None
    telegram: dict[Locale, TextVariant] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_channels(cls, data: Any) -> Any:
        # Named here because pydantic's "extra inputs are not permitted" does not tell the author what is allowed.
        if isinstance(data, Mapping):
            for key in data:
                if key in (Channel.VOICE, Channel.IN_STORE):
                    message = f"channel {key!r} carries no written messages; a template cannot have one"
                    raise _VariantError(message, variant=str(key))
                if key not in _VARIANT_KEYS:
                    message = f"unknown channel {key!r}; variants can be: {', '.join(_VARIANT_KEYS)}"
                    raise _VariantError(message, variant=str(key))
        return data

    def by_key(self) -> dict[str, Mapping[str, _Variant]]:
        """Return the variants present, keyed ``default`` or by channel value, each by locale."""
        return {key: getattr(self, key) for key in _VARIANT_KEYS if getattr(self, key) is not None}


class MessageTemplate(BaseModel):
    """A message the company sends (appointment confirmation, back-in-stock notice...), in every form it takes.

    Frozen, and fully checked when built: every variant's text is parsed and held to the sandbox's rules, and
    every channel has a variant in ``default_locale``, so locale fallback always ends on something to send.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    #: Stable id, used in analytics ("delivery rate per template") and in send commands.
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,99}$")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    #: Decides which consent the send needs: marketing needs an opt-in, transactional only no opt-out.
    purpose: ConsentPurpose
    default_locale: Locale = "es"
    variants: Variants

    @model_validator(mode="after")
    def _complete(self) -> Self:
        present = self.variants.by_key()
        if not present:
            raise ValueError("a template needs at least one variant (default or a channel)")
        for key, by_locale in present.items():
            if self.default_locale not in by_locale:
                message = (
                    f"variant {key!r} has no {self.default_locale!r} locale (the template's default_locale), "
                    "where locale fallback ends"
                )
                raise _VariantError(message, variant=key)
        return self

    def supports(self, channel: Channel) -> bool:
        """Tell whether ``render`` can produce something for ``channel``.

        Parameters
        ----------
        channel : Channel
            A channel the message might go out on.

        Returns
        -------
        bool
            True when the channel has a variant, or falls back to ``default``; e-mail falls back only to a default
            variant with a ``subject``. Channel choice uses it to skip channels this template cannot speak.
        """
        return _variant_key(self, channel) is not None


def _variant_key(template: MessageTemplate, channel: Channel) -> str | None:
    if channel not in TEMPLATE_CHANNELS:
        return None
    if getattr(template.variants, channel.value) is not None:
        return channel.value
    default = template.variants.default
    if default is None:
        return None
    if channel == Channel.EMAIL and any(variant.subject is None for variant in default.values()):
        return None  # an e-mail needs a subject in whatever locale it falls back to
    return DEFAULT_VARIANT


def _error_detail(template_id: str, error: Any) -> dict[str, str | None]:
    location = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    variant = field = None
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _VariantError):
        variant = cause.variant
    elif location[:1] == ["variants"] and len(location) > 1:
        variant = "/".join(location[1:3])
        field = ".".join(location[3:]).replace("[key]", "(locale)") or None
    elif location:
        field = ".".join(location)
    return {"template": template_id, "variant": variant, "field": field, "message": message}


def load_template(data: Mapping[str, Any] | str | bytes) -> MessageTemplate:
    """Build a template from its stored or uploaded form, with errors its author can act on.

    Parameters
    ----------
    data : mapping, str or bytes
        The template as a mapping (parsed YAML or JSON) or as JSON text.

    Returns
    -------
    MessageTemplate
        The checked template. Its fields are compiled and cached, so its first render is fast.

    Raises
    ------
    TemplateInvalid
        If anything is wrong. The message names the template, the variant (``channel/locale``) and the field of
        every problem, e.g. ``template 'cita_confirmada': variant sms/es, field text: unknown variable 'cliente'``;
        ``details`` holds the same as ``{"template", "variant", "field", "message"}`` entries.
    """
    from shared.catalog.files import as_document

    data = as_document(data, TemplateInvalid, kind="template", expected="id, purpose and variants")
    template_id = str(data.get("id") or "?")
    try:
        return MessageTemplate.model_validate(data)
    except ValidationError as exc:
        details = [_error_detail(template_id, error) for error in exc.errors(include_url=False)]
        problems = "; ".join(
            ", ".join(
                part
                for part in (
                    f"variant {d['variant']}" if d["variant"] else "",
                    f"field {d['field']}" if d["field"] else "",
                )
                if part
            )
            + (": " if d["variant"] or d["field"] else "")
            + str(d["message"])
            for d in details
        )
        raise TemplateInvalid(f"template {template_id!r}: {problems}", details=details) from None


# ------------------------------------------------------------------------------------------------------ context


class TemplateCustomer(BaseModel):
    """What a template sees of the customer: no identifiers, no consents, nothing it has no business printing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    locale: Locale = "es"
    time_zone: TimeZoneName | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict)

    @property
    def first_name(self) -> str | None:
        """The first word of ``display_name`` that is a name: "ANA MARÍA PÉREZ" → "Ana", "josé 🌸" → "José".

        None when the display name has no letters (WhatsApp profile names are sometimes just a phone number or
        emoji). An all-capitals or all-lower-case word is capitalised; mixed case is kept ("McKay").
        """
        match = _FIRST_NAME_RE.search(self.display_name or "")
        if match is None:
            return None
        word = match.group()
        if word.isupper() or word.islower():
            word = "-".join(part[:1].upper() + part[1:].lower() for part in word.split("-"))
        return word

    @classmethod
    def from_profile(cls, profile: CustomerProfile) -> Self:
        """Take the template's view of a stored profile."""
        return cls(
            display_name=profile.display_name,
            locale=profile.locale,
            time_zone=profile.time_zone,
            attributes=dict(profile.attributes),
        )


class RenderContext(BaseModel):
    """Everything a render may read: ``customer``, ``event`` (the triggering event's data) and ``vars``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer: TemplateCustomer = Field(default_factory=TemplateCustomer)
    event: dict[str, JsonValue] = Field(default_factory=dict)
    #: Values given explicitly with the send command (an agent's appointment slot, a tracking link...).
    vars: dict[str, JsonValue] = Field(default_factory=dict)
    #: Dates are shown in the customer's time zone; this one when theirs is unknown.
    default_time_zone: TimeZoneName = DEFAULT_TIME_ZONE

    @classmethod
    def of(
        cls,
        profile: CustomerProfile | None = None,
        *,
        event: DomainEvent | Mapping[str, Any] | None = None,
        vars: Mapping[str, Any] | None = None,
        default_time_zone: str = DEFAULT_TIME_ZONE,
    ) -> Self:
        """Build a context from domain objects.

        Parameters
        ----------
        profile : CustomerProfile, optional
            The recipient; templates see only ``TemplateCustomer``'s fields of it.
        event : DomainEvent or mapping, optional
            The triggering event (its ``data`` is what templates see as ``event``) or that data directly.
        vars : mapping, optional
            Explicit values from the send command.
        default_time_zone : str
            The tenant's zone for customers whose own is unknown.

        Returns
        -------
        RenderContext
            The validated context.
        """
        data = event.data if isinstance(event, DomainEvent) else dict(event or {})
        customer = TemplateCustomer() if profile is None else TemplateCustomer.from_profile(profile)
        return cls(customer=customer, event=data, vars=dict(vars or {}), default_time_zone=default_time_zone)

    def _variables(self, formatting: _Formatting) -> dict[str, Any]:
        customer = {
            "display_name": self.customer.display_name,
            "first_name": self.customer.first_name,
            "locale": self.customer.locale,
            "time_zone": self.customer.time_zone,
            "attributes": self.customer.attributes,
        }
        return {
            "customer": _Data(customer, "customer"),
            "event": _Data(self.event, "event"),
            "vars": _Data(self.vars, "vars"),
            _SETTINGS_VAR: formatting,
        }


# ------------------------------------------------------------------------------------------------------- render


class Rendered(BaseModel):
    """One template rendered for one channel and customer: what the sender puts in the provider's request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template_id: str
    purpose: ConsentPurpose
    channel: Channel
    #: The variant used: the channel's own, or ``default``.
    variant: str
    #: The locale of the variant used, after fallback (``es-CO`` asked, ``es`` found).
    locale: Locale
    #: None only for a WhatsApp variant that is an approved template alone.
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    whatsapp_template: WhatsAppTemplateMessage | None = None
    #: Encoding and segment count of ``text``, for SMS only.
    sms: SmsInfo | None = None


_LOCALE: Final = TypeAdapter(Locale)


def _locale_chain(requested: str, default_locale: str) -> list[str]:
    language = requested.split("-")[0]
    return list(dict.fromkeys((requested, language, default_locale)))


def _run(source: str, variables: Mapping[str, Any], *, html: bool = False, expression: bool = False) -> str:
    from jinja2 import TemplateError

    limit = _MAX_HTML_OUTPUT if html else _MAX_TEXT_OUTPUT
    chunks: list[str] = []
    size = 0
    try:
        for chunk in _compile(source, html, expression).generate(variables):
            size += len(chunk)
            if size > limit:  # stops a runaway loop's output before it fills the function's memory
                raise ValueError(f"renders to more than {limit:,} characters")
            chunks.append(chunk)
    except (TemplateError, ValueError, TypeError, ArithmeticError) as exc:
        raise _Failure(str(exc)) from exc
    return "".join(chunks)


class _Failure(Exception):
    """A field failed to render; ``render`` adds the template, variant and field to the message."""


def _clean_text(value: str) -> str:
    # NFC: an "é" typed as "e" + combining accent is GSM-7 once composed, and compares equal to the customer's.
    return unicodedata.normalize("NFC", value).strip()


def _one_line(value: str) -> str:
    # Subjects and WhatsApp parameters must be a single line (Meta refuses newlines, tabs and runs of spaces).
    return _WHITESPACE_RE.sub(" ", unicodedata.normalize("NFC", value)).strip()


def render(template: MessageTemplate, channel: Channel, locale: str | None, context: RenderContext) -> Rendered:
    """Render ``template`` for one channel and customer.

    Parameters
    ----------
    template : MessageTemplate
        A loaded template (``load_template``).
    channel : Channel
        The channel the message goes out on. Its own variant is used if the template has one, else ``default``
        (for e-mail, only a default with a ``subject``). The channel is chosen before the locale: a WhatsApp
        variant in Spanish beats a default one in English, because only the former may be an approved template.
    locale : str or None
        The language wanted, e.g. ``es-CO``; None for the customer's. Falls back ``es-CO`` → ``es`` → the
        template's ``default_locale``. Dates and amounts are formatted in the language of the variant used.
    context : RenderContext
        What the template may read.

    Returns
    -------
    Rendered
        The text (NFC-normalised, trimmed), the subject and HTML for e-mail, the approved WhatsApp template with
        its rendered parameters, and the SMS encoding and segment count for SMS.

    Raises
    ------
    RenderFailed
        If the template has no variant for ``channel``, a value is missing (the message names it, e.g.
        ``'vars.fecha' is undefined``), the sandbox refused an operation, a filter was given a bad value, or a
        field rendered empty. The message and ``details`` name the template, variant and field.
    InvalidInput
        If ``locale`` is not a language tag.
    """
    try:
        requested = _LOCALE.validate_python(locale or context.customer.locale)
    except ValidationError:
        raise InvalidInput(f"locale {locale!r} is not a language tag like 'es' or 'es-CO'") from None
    key = _variant_key(template, channel)
    if key is None:
        raise RenderFailed(
            f"template {template.id!r} has no variant for channel {channel.value!r}",
            details=[{"template": template.id, "variant": None, "field": None, "message": "no variant"}],
        )
    by_locale = template.variants.by_key()[key]
    chosen = next(tag for tag in _locale_chain(requested, template.default_locale) if tag in by_locale)
    variant = by_locale[chosen]
    zone = ZoneInfo(context.customer.time_zone or context.default_time_zone)
    variables = context._variables(_Formatting(language=chosen.split("-")[0], zone=zone))

    def field(name: str, source: str, *, html: bool = False, expression: bool = False, one_line: bool = False) -> str:
        where = f"template {template.id!r}, variant {key}/{chosen}, field {name}"
        try:
            raw = _run(source, variables, html=html, expression=expression)
        except _Failure as exc:
            detail = {"template": template.id, "variant": f"{key}/{chosen}", "field": name, "message": str(exc)}
            raise RenderFailed(f"{where}: {exc}", details=[detail]) from exc.__cause__
        value = raw if html else _one_line(raw) if one_line else _clean_text(raw)
        if not value.strip():
            detail = {"template": template.id, "variant": f"{key}/{chosen}", "field": name, "message": "empty"}
            raise RenderFailed(f"{where}: rendered empty", details=[detail])
        return value

    text = subject = html = None
    whatsapp = None
    source_text = getattr(variant, "text", None)
    if source_text is not None:
        text = field("text", source_text)
    if channel == Channel.EMAIL and isinstance(variant, EmailVariant | DefaultVariant) and variant.subject:
        subject = field("subject", variant.subject, one_line=True)
    if isinstance(variant, EmailVariant) and variant.html is not None:
        html = field("html", variant.html, html=True)
    if isinstance(variant, WhatsAppVariant) and variant.whatsapp_template is not None:
        ref = variant.whatsapp_template
        parameters = tuple(
            field(f"whatsapp_template.parameters.{index}", expression, expression=True, one_line=True)
            for index, expression in enumerate(ref.parameters)
        )
        whatsapp = WhatsAppTemplateMessage(name=ref.name, language=ref.language, parameters=parameters)
    return Rendered(
        template_id=template.id,
        purpose=template.purpose,
        channel=channel,
        variant=key,
        locale=chosen,
        text=text,
        subject=subject,
        html=html,
        whatsapp_template=whatsapp,
        sms=measure_sms(text) if channel == Channel.SMS and text is not None else None,
    )
