"""SMS segment count (3GPP TS 23.038): GSM-7 when every character is in the GSM 03.38 default alphabet or
its extension table (extension characters take two septets), otherwise UCS-2 (UTF-16 code units).

One message holds 160 GSM-7 septets or 70 UCS-2 units; a concatenated message's parts hold 153 / 67 (the
user data header takes the rest). A GSM-7 escape pair is never split across two parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    count: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def count_segments(text: str) -> Segments:
    if not text:
        return Segments("GSM-7", 0, 0)
    if is_gsm7(text):
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part, encoding = 160, 153, "GSM-7"
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, part, encoding = 70, 67, "UCS-2"
    total = sum(sizes)
    if total <= single:
        return Segments(encoding, total, 1)  # type: ignore[arg-type]
    count, used = 1, 0
    for size in sizes:  # characters (escape pairs, surrogate pairs) never straddle two parts
        if used + size > part:
            count += 1
            used = 0
        used += size
    return Segments(encoding, total, count)  # type: ignore[arg-type]
