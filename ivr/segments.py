"""SMS segments counted the way Twilio counts them (its message-segment-calculator).

A message whose every character is in the GSM 03.38 alphabet goes as GSM-7: 160 septets in a
single message, 153 per segment once split (the 6-octet concatenation header takes the rest);
the extension-table characters (^ { } \\ [ ~ ] | € and form feed) take two septets each.
Anything else, Japanese included, goes as UCS-2: 70 UTF-16 code units in one message, 67 per
segment when split, and a character outside the BMP (most emoji) takes two code units.

Segments are filled greedily and a character is never cut in two: an escape pair, a
surrogate pair or a whole grapheme cluster (an emoji ZWJ sequence, a flag, a base letter with
its combining marks) that does not fit moves to the next segment, as Twilio's calculator does.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
"""Units in a message that is not split."""
PER_SEGMENT = {"GSM-7": 153, "UCS-2": 67}
"""Units per segment of a split (concatenated) message."""

_ZWJ = "\u200d"


@dataclass(frozen=True)
class Segments:
    """How Twilio bills one message body.

    `units` is septets for GSM-7 and UTF-16 code units for UCS-2; `per_segment` is what one
    segment holds at this length (160/70 when the message is not split, 153/67 when it is).
    """

    encoding: Encoding
    units: int
    count: int
    per_segment: int


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM alphabet or its extension table."""
    return "GSM-7" if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text) else "UCS-2"


def _extends(ch: str) -> bool:
    """True for code points that belong to the grapheme cluster before them."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or ch == _ZWJ
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences (subdivision flags)
        or cp in (0xFF9E, 0xFF9F)  # half-width katakana voiced sound marks
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def graphemes(text: str) -> list[str]:
    """Split `text` into user-perceived characters (a practical subset of UAX #29).

    Covers what SMS text meets: CR LF, combining marks, variation selectors, skin tones, ZWJ
    emoji sequences, flag pairs and tag sequences. Hangul jamo sequences are not joined.
    """
    out: list[str] = []
    for ch in text:
        if out:
            last = out[-1]
            if ((last == "\r" and ch == "\n") or _extends(ch) or last.endswith(_ZWJ)
                    or (_regional(ch) and _regional(last[-1])
                        and sum(map(_regional, last)) % 2 == 1)):
                out[-1] = last + ch
                continue
        out.append(ch)
    return out


def _sizes(text: str, encoding: Encoding) -> list[int]:
    """The units of each unsplittable piece of `text`."""
    if encoding == "GSM-7":
        return [2 if c in GSM_EXTENSION else 1 for c in text]
    return [len(g.encode("utf-16-le")) // 2 for g in graphemes(text)]


def segments(text: str) -> Segments:
    """Encoding, units and segment count of an SMS body, as Twilio bills it.

    An empty body has 0 units and 0 segments.
    """
    encoding = encoding_of(text)
    sizes = _sizes(text, encoding)
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return Segments(encoding, units, 1 if units else 0, SINGLE[encoding])
    capacity = PER_SEGMENT[encoding]
    count, free = 1, capacity
    for size in sizes:
        if size > free:
            count, free = count + 1, capacity
        free -= size
    return Segments(encoding, units, count, capacity)


def over_by(text: str, limit: int) -> int:
    """How many characters (code points) must go from the end of `text` for it to fit in
    `limit` segments; 0 when it already fits."""
    if limit < 1:
        raise ValueError("limit must be at least one segment")
    if segments(text).count <= limit:
        return 0
    # Segments never decrease as a prefix grows, so search for the longest prefix that fits.
    low, high = 0, len(text)  # prefix text[:low] fits, text[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if segments(text[:middle]).count <= limit:
            low = middle
        else:
            high = middle
    return len(text) - low


def truncate(text: str, limit: int) -> str:
    """`text` cut at the end, marked with an ellipsis, so that it fits in `limit` segments.

    A GSM-7 text gets "..." (the "…" character would turn the whole message into UCS-2).
    """
    if over_by(text, limit) == 0:
        return text
    ellipsis = "..." if encoding_of(text) == "GSM-7" else "…"
    keep = len(text) - over_by(text, limit)
    while keep > 0 and segments(text[:keep] + ellipsis).count > limit:
        keep -= 1
    return text[:keep] + ellipsis
