"""ivr/segments.py counts segments exactly as Twilio bills them."""

from __future__ import annotations

import pytest

from ivr.segments import Segments, graphemes, over_by, segments, truncate

JA = "あ"  # any Japanese character: UCS-2, one code unit
EMOJI = "😀"  # outside the BMP: a surrogate pair, two code units
FAMILY = "👨\u200d👩\u200d👧"  # one grapheme of 8 code units


@pytest.mark.parametrize(("text", "expected"), [
    ("a" * 160, Segments("GSM-7", 160, 1, 160)),
    ("a" * 161, Segments("GSM-7", 161, 2, 153)),
    ("a" * 306, Segments("GSM-7", 306, 2, 153)),
    ("a" * 307, Segments("GSM-7", 307, 3, 153)),
    (JA * 70, Segments("UCS-2", 70, 1, 70)),
    (JA * 71, Segments("UCS-2", 71, 2, 67)),
    (JA * 134, Segments("UCS-2", 134, 2, 67)),
    (JA * 135, Segments("UCS-2", 135, 3, 67)),
    ("", Segments("GSM-7", 0, 0, 160)),
    ("a", Segments("GSM-7", 1, 1, 160)),
])
def test_boundaries(text, expected):
    assert segments(text) == expected


@pytest.mark.parametrize("char", list("^{}\\[~]|€") + ["\f"])
def test_extension_characters_take_two_septets(char):
    assert segments(char) == Segments("GSM-7", 2, 1, 160)
    assert segments(char * 80) == Segments("GSM-7", 160, 1, 160)
    assert segments(char * 81) == Segments("GSM-7", 162, 2, 153)
    assert segments("a" * 159 + char) == Segments("GSM-7", 161, 2, 153)


def test_an_escape_pair_is_never_split_across_segments():
    # 306 septets would fit in two segments, but the pair at septets 153-154 moves whole.
    text = "a" * 152 + "{" + "a" * 152
    assert segments(text) == Segments("GSM-7", 306, 3, 153)
    assert segments("a" * 151 + "{" + "a" * 153) == Segments("GSM-7", 306, 2, 153)


def test_gsm_alphabet_edges():
    assert segments("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà").encoding == "GSM-7"
    assert segments("Ça va").encoding == "GSM-7"
    assert segments("ça va").encoding == "UCS-2"  # lower-case ç is not in GSM 03.38
    assert segments("a" * 160 + "`").encoding == "UCS-2"  # nor is the backtick
    assert segments("line one\r\nline two").encoding == "GSM-7"


def test_one_non_gsm_character_makes_the_whole_message_ucs2():
    assert segments("a" * 69 + "ç") == Segments("UCS-2", 70, 1, 70)
    assert segments("a" * 70 + "ç") == Segments("UCS-2", 71, 2, 67)
    # In UCS-2 an extension character is one code unit like any other.
    assert segments("{" * 69 + JA) == Segments("UCS-2", 70, 1, 70)


def test_an_emoji_counts_two_units():
    assert segments(EMOJI) == Segments("UCS-2", 2, 1, 70)
    assert segments(JA * 68 + EMOJI) == Segments("UCS-2", 70, 1, 70)
    assert segments(JA * 69 + EMOJI) == Segments("UCS-2", 71, 2, 67)


def test_a_surrogate_pair_is_never_split_across_segments():
    # Twilio's own calculator test: an emoji and 133 digits make three segments.
    assert segments(EMOJI + "2" * 133) == Segments("UCS-2", 135, 3, 67)
    # 134 units, but the emoji would straddle the segment boundary, so it moves whole.
    assert segments(JA * 66 + EMOJI + JA * 66) == Segments("UCS-2", 134, 3, 67)
    assert segments(JA * 65 + EMOJI + JA * 67) == Segments("UCS-2", 134, 2, 67)


def test_a_grapheme_cluster_moves_whole():
    assert graphemes(FAMILY + "🇯🇵🇺🇸👍🏽が\r\nx") == [FAMILY, "🇯🇵", "🇺🇸", "👍🏽", "が", "\r\n", "x"]
    assert segments(FAMILY).units == 8
    # 134 units; the family emoji would start at unit 64 of the first segment and not fit.
    assert segments(JA * 63 + FAMILY + JA * 63) == Segments("UCS-2", 134, 3, 67)
    assert segments(JA * 59 + FAMILY + JA * 67) == Segments("UCS-2", 134, 2, 67)


def test_japanese_text():
    text = ("【サポートセンター】メール障害のお知らせ\n"
            "現在、メールサービスがご利用いただけない状況です。\n"
            "復旧見込み: 現在確認中です")
    assert len(text) == 61
    assert segments(text) == Segments("UCS-2", 61, 1, 70)
    assert segments(text + "\n次回のお知らせ: 11時00分ごろ").count == 2
    # Full-width digits and the ideographic space are UCS-2 too.
    assert segments("１２３\u3000").encoding == "UCS-2"


@pytest.mark.parametrize(("text", "limit", "expected"), [
    (JA * 70, 1, 0),
    (JA * 71, 1, 1),
    (JA * 80, 1, 10),
    (JA * 134, 2, 0),
    (JA * 135, 2, 1),
    ("a" * 160, 1, 0),
    ("a" * 170, 1, 10),
    ("a" * 307, 2, 1),
    ("{" * 81, 1, 1),
    (JA * 69 + EMOJI, 1, 1),  # the emoji is one character, two units
    ("", 1, 0),
])
def test_over_by(text, limit, expected):
    assert over_by(text, limit) == expected
    if expected:
        assert segments(text[: len(text) - expected]).count <= limit
        assert segments(text[: len(text) - expected + 1]).count > limit


def test_over_by_needs_at_least_one_segment():
    with pytest.raises(ValueError):
        over_by("a", 0)


def test_truncate():
    assert truncate(JA * 70, 1) == JA * 70
    cut = truncate(JA * 80, 1)
    assert cut == JA * 69 + "…"
    assert segments(cut) == Segments("UCS-2", 70, 1, 70)
    gsm = truncate("a" * 200, 1)
    assert gsm == "a" * 157 + "..."
    assert segments(gsm) == Segments("GSM-7", 160, 1, 160)
    assert segments(truncate(JA * 500, 3)).count == 3
