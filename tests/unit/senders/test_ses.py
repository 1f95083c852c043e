"""E-mail through SES v2 on moto: the MIME message as the customer's mail client reads it, and SES's answers."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from shared.adapters.senders.base import SenderNotConfigured
from shared.adapters.senders.ses import SesEmailClient, build_mime
from shared.errors import RetryableError
from shared.models.common import Channel
from shared.models.message import DeliveryStatus
from shared.outbound.delivery import DeliveryRejected, Rejection
from tests.unit.senders.support import job, pdf

FROM = "Tienda Hilo <ayuda@tienda.co>"
TO = "ana.maria@correo.co"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_sesv2() -> Iterator[Any]:
    # One mocked account for the module: creating a client is most of a test's time.
    with mock_aws():
        client = boto3.client("sesv2", region_name=REGION)
        client.create_email_identity(EmailIdentity="tienda.co")
        yield client


@pytest.fixture
def sesv2(moto_sesv2: Any) -> Any:
    ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages.clear()
    return moto_sesv2


def sent_mail() -> tuple[Any, EmailMessage]:
    [raw] = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    mail = message_from_bytes(raw.raw_data.encode(), policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return raw, mail


def test_a_reply_is_threaded_under_the_customers_message(sesv2: Any) -> None:
    # Given an answer to the customer's mail, which answered an earlier one
    client = SesEmailClient(email_from=FROM, sesv2=sesv2)
    answer = job(
        Channel.EMAIL,
        TO,
        subject="Re: Televisor dañado",
        text="Hola Ana,\n\nAdjunto la factura.",
        html="<p>Hola Ana,</p><p>Adjunto la factura.</p>",
        in_reply_to="CAF=abc123@mail.gmail.com",
        references=("<0100018e-first@email.amazonses.com>",),
        media=(pdf(filename="factura-0042.pdf"),),
    )
    # When
    accepted = client.send(answer)
    # Then SES's MessageId names the message
    raw, mail = sent_mail()
    assert accepted.provider_message_id == raw.id
    assert accepted.status == DeliveryStatus.SENT
    assert raw.source == "ayuda@tienda.co"
    # And the headers a mail client threads and shows
    assert mail["From"] == FROM
    assert mail["To"] == TO
    assert mail["Subject"] == "Re: Televisor dañado"
    assert mail["In-Reply-To"] == "<CAF=abc123@mail.gmail.com>"
    assert mail["References"] == "<0100018e-first@email.amazonses.com> <CAF=abc123@mail.gmail.com>"
    assert mail["Message-ID"] == f"<{answer.message_id}@tienda.co>"
    # And the body: text and HTML alternatives, the attachment as a link in both
    assert mail.get_content_type() == "multipart/alternative"
    text, html = (part.get_content().replace("\r\n", "\n") for part in mail.iter_parts())
    assert text.startswith("Hola Ana,\n\nAdjunto la factura.")
    assert "factura-0042.pdf: https://cdn.tienda.co/factura.pdf" in text
    assert '<a href="https://cdn.tienda.co/factura.pdf">factura-0042.pdf</a>' in html


def test_a_plain_message_is_text_only_and_the_subject_is_encoded(sesv2: Any) -> None:
    SesEmailClient(email_from="ayuda@tienda.co", sesv2=sesv2).send(
        job(Channel.EMAIL, TO, subject="¿Recibiste tu televisor? 📺", text="Hola")
    )
    raw, mail = sent_mail()
    assert mail.get_content_type() == "text/plain"
    assert mail["Subject"] == "¿Recibiste tu televisor? 📺"
    assert "=?utf-8?" in raw.raw_data  # RFC 2047 on the wire, decoded by the client
    assert "In-Reply-To" not in mail


def test_the_configuration_set_and_message_tag_are_sent(sesv2: Any) -> None:
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    sesv2.meta.events.register("provide-client-params.sesv2.SendEmail", record)
    answer = job(Channel.EMAIL, TO)
    try:
        SesEmailClient(email_from="ayuda@tienda.co", configuration_set="hilo-events", sesv2=sesv2).send(answer)
    finally:
        sesv2.meta.events.unregister("provide-client-params.sesv2.SendEmail", record)
    [params] = calls
    assert params["ConfigurationSetName"] == "hilo-events"
    assert params["EmailTags"] == [{"Name": "hilo_message_id", "Value": answer.message_id}]
    assert params["Destination"] == {"ToAddresses": [TO]}
    assert params["FromEmailAddress"] == "ayuda@tienda.co"


def test_an_unverified_sender_is_a_configuration_to_fix(sesv2: Any) -> None:
    client = SesEmailClient(email_from="ventas@otra-tienda.co", sesv2=sesv2)
    with pytest.raises(RetryableError, match="MessageRejected") as error:
        client.send(job(Channel.EMAIL, TO))
    assert not isinstance(error.value, DeliveryRejected)


@pytest.mark.parametrize("address", ["ana.maria", "ana maria@correo.co", "ana@", "ana@correo"])
def test_an_address_ses_cannot_send_to_is_refused_before_calling(sesv2: Any, address: str) -> None:
    with pytest.raises(DeliveryRejected) as error:
        SesEmailClient(email_from=FROM, sesv2=sesv2).send(job(Channel.EMAIL, address))
    assert error.value.rejection == Rejection.INVALID_ADDRESS
    assert ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages == []


def test_an_international_domain_is_sent_in_its_ascii_form(sesv2: Any) -> None:
    SesEmailClient(email_from=FROM, sesv2=sesv2).send(job(Channel.EMAIL, "jose@añoranza.co"))
    _raw, mail = sent_mail()
    assert mail["To"] == "jose@xn--aoranza-4za.co"  # "añoranza.co" in IDNA


def test_a_line_break_in_the_subject_is_refused_not_injected(sesv2: Any) -> None:
    with pytest.raises(DeliveryRejected) as error:
        SesEmailClient(email_from=FROM, sesv2=sesv2).send(job(Channel.EMAIL, TO, subject="Hola\nBcc: todos@x.co"))
    assert error.value.rejection == Rejection.CONTENT


def test_no_sender_names_the_setting() -> None:
    with pytest.raises(SenderNotConfigured, match="HILO_EMAIL_FROM"):
        SesEmailClient(email_from=None, sesv2=object()).send(job(Channel.EMAIL, TO))


@pytest.mark.parametrize(
    ("code", "message", "outcome"),
    [
        ("TooManyRequestsException", "Maximum sending rate exceeded.", None),
        ("LimitExceededException", "Daily message quota exceeded.", None),
        ("SendingPausedException", "Sending is paused for this account.", None),
        ("AccountSuspendedException", "The account is suspended.", None),
        ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified.", None),
        ("MessageRejected", "Email address is not verified. The following identities failed the check.", None),
        ("MessageRejected", "Message contains a virus.", Rejection.CONTENT),
        ("BadRequestException", "Illegal address", Rejection.INVALID_ADDRESS),
    ],
)
def test_ses_errors_are_classified(sesv2: Any, code: str, message: str, outcome: Rejection | None) -> None:
    # Given SES answering with this error (botocore's own stubber: SES's real error shapes)
    client = sesv2
    stubber = Stubber(client)
    stubber.add_client_error("send_email", service_error_code=code, service_message=message, http_status_code=400)
    # When / Then
    with stubber, pytest.raises((DeliveryRejected, RetryableError)) as error:
        SesEmailClient(email_from=FROM, sesv2=client).send(job(Channel.EMAIL, TO))
    if outcome is None:
        assert not isinstance(error.value, DeliveryRejected)
        assert code in str(error.value)
    else:
        assert isinstance(error.value, DeliveryRejected)
        assert error.value.rejection == outcome
        assert error.value.provider_code == code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=120).filter(
        lambda value: value.strip() == value and value.strip()
    ),
    text=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r"), min_size=1, max_size=400),
)
def test_any_subject_and_text_survive_the_trip_through_mime(subject: str, text: str) -> None:
    # What the customer's mail client decodes is exactly what Hilo wrote (accents, ñ, emoji, long lines).
    answer = job(Channel.EMAIL, TO, subject=subject, text=text)
    mail = message_from_bytes(build_mime(answer, sender=FROM, to=TO), policy=policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] == subject
    expected = text if text.endswith("\n") else text + "\n"  # a MIME text part ends with a line break
    assert mail.get_content().replace("\r\n", "\n") == expected
