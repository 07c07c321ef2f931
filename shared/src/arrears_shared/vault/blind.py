"""Blind indexes: keyed hashes that keep exact lookups working on encrypted data.

`HMAC-SHA256(index key, kind ‖ normalised value)`, truncated to 16 bytes and hex-encoded. Without the index
key (`ARREARS_VAULT_INDEX_KEY`, never in the database) a stored index cannot be tested against guessed phone
numbers, unlike a plain hash. Kinds keep equal strings of different meaning apart (`phone`, `email`,
`name`: one index per lower-cased word of a name, so a search for "smith" finds "Ann Smith").
"""

from __future__ import annotations

import hashlib
import hmac
import re

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalise(kind: str, value: str) -> str:
    v = value.strip()
    if kind == "email":
        return v.lower()
    if kind == "phone":
        return "+" + re.sub(r"\D", "", v) if v else v
    return v.casefold()


def index(key: bytes, kind: str, value: str) -> str:
    digest = hmac.new(key, f"{kind}\x00{normalise(kind, value)}".encode(), hashlib.sha256).digest()
    return digest[:16].hex()


def prefixes(word: str, shortest: int = 2) -> list[str]:
    return [word[:n] for n in range(min(shortest, len(word)), len(word) + 1)]


def digit_tails(phone: str, shortest: int = 4) -> list[str]:
    """Every trailing run of 4+ digits of a number: "555 0142" finds +14155550142."""
    digits = re.sub(r"\D", "", phone)
    return [digits[-n:] for n in range(shortest, len(digits) + 1)]


def name_words(name: str) -> list[str]:
    """The words of a name a search can match one by one (casefolded, deduplicated, in order)."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(name.casefold()):
        seen.setdefault(w, None)
    return list(seen)
