"""SMS encoding (GSM-7 vs UCS-2, 3GPP TS 23.038) and segment count at the boundaries carriers split on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.outbound.sms import SmsEncoding, measure_sms, split_sms


@pytest.mark.parametrize(
    ("text", "encoding", "non_gsm7"),
    [
        # ¡ and ¿ are in the default alphabet; á is not, and one á turns the whole message into UCS-2.
        ("¡Hola Ana! Tu televisor está listo", SmsEncoding.UCS2, ("á",)),
        ("¡Hola Ana! Tu televisor esta listo", SmsEncoding.GSM7, ()),
        ("¿Qué hora te queda bien? Mañana o el miércoles", SmsEncoding.GSM7, ()),  # é, ñ: GSM-7
        ("Tu pedido llegó", SmsEncoding.UCS2, ("ó",)),
        ("Confirmación: cita el día 7", SmsEncoding.UCS2, ("ó", "í")),
        ("ÉXITO: PIN 1234", SmsEncoding.GSM7, ()),  # É is in; Á, Í, Ó, Ú are not
        ("ÁREA DE CLIENTES", SmsEncoding.UCS2, ("Á",)),
        ("Pingüino, ÜBER, à la carte", SmsEncoding.GSM7, ()),
        ("Ç sí, ç no", SmsEncoding.UCS2, ("í", "ç")),  # 0x09 is the capital only
        ("Oferta {hoy} [20%] ~ €5 | ^_^ \\o/", SmsEncoding.GSM7, ()),
        ("Gracias 🙏", SmsEncoding.UCS2, ("🙏",)),
        ("Precio “especial”", SmsEncoding.UCS2, ("“", "”")),  # curly quotes from a word processor
    ],
)
def test_encoding_follows_the_gsm7_default_alphabet_and_extension_table(
    text: str, encoding: SmsEncoding, non_gsm7: tuple[str, ...]
) -> None:
    # Given / When
    info = measure_sms(text)

    # Then
    assert info.encoding == encoding
    assert info.non_gsm7 == non_gsm7


def test_extension_characters_count_two_septets() -> None:
    # Given: 5 plain characters and 9 from the extension table
    text = "Total€{}[]~|^\\"

    # When
    info = measure_sms(text)

    # Then
    assert (info.encoding, info.characters, info.units) == (SmsEncoding.GSM7, 14, 5 + 9 * 2)


def test_emoji_count_two_utf16_units() -> None:
    # Given
    text = "Listo 👍"

    # When
    info = measure_sms(text)

    # Then
    assert (info.encoding, info.characters, info.units) == (SmsEncoding.UCS2, 7, 8)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 153 * 2, 2),
        ("a" * (153 * 2 + 1), 3),
        ("a" * 158 + "€", 1),  # 160 septets
        ("a" * 159 + "€", 2),  # 161 septets
        ("á" * 70, 1),
        ("á" * 71, 2),
        ("á" * 67 * 2, 2),
        ("á" * (67 * 2 + 1), 3),
        ("á" * 68 + "😀", 1),  # 70 code units
        ("á" * 69 + "😀", 2),  # 71 code units
    ],
)
def test_segments_at_the_boundaries(text: str, segments: int) -> None:
    # Given / When
    info = measure_sms(text)

    # Then
    assert info.segments == segments
    assert len(split_sms(text)) == segments


def test_an_extension_character_never_straddles_two_parts() -> None:
    # Given: the € (ESC + e) would start at septet 153, the last one of the first part
    text = "a" * 152 + "€" + "b" * 10

    # When
    parts = split_sms(text)

    # Then it moves whole to the second part
    assert [len(part) for part in parts] == [152, 11]
    assert parts[1].startswith("€")


def test_a_surrogate_pair_never_straddles_two_parts() -> None:
    # Given: the emoji's two code units would be the 67th and 68th of the first part
    text = "á" * 66 + "😀" + "é" * 10

    # When
    parts = split_sms(text)

    # Then
    assert [len(part) for part in parts] == [66, 11]
    assert measure_sms(text).segments == 2


def test_moving_a_character_can_cost_an_extra_part() -> None:
    # Given: 306 septets, exactly 2 x 153, but a € at the first part's last septet must move
    text = "a" * 152 + "€" + "b" * 152

    # When
    info = measure_sms(text)

    # Then
    assert info.units == 306
    assert info.segments == 3


@given(st.text(alphabet=st.sampled_from("ab€{ñáé😀 ¿"), max_size=600))
def test_parts_rejoin_to_the_text_and_each_fits(text: str) -> None:
    # Given / When
    parts = split_sms(text)
    info = measure_sms(text)

    # Then
    assert "".join(parts) == text
    assert len(parts) == info.segments
    limit = 160 if info.encoding == SmsEncoding.GSM7 else 70
    per_part = 153 if info.encoding == SmsEncoding.GSM7 else 67
    for part in parts:
        units = measure_sms(part).units if info.encoding == SmsEncoding.GSM7 else len(part.encode("utf-16-le")) // 2
        assert units <= (limit if len(parts) == 1 else per_part)
