"""Text normalisation shared by the rules and the extractors."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPACES = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Lower case, no accents, straight apostrophes, single spaces: what every rule pattern sees."""
    t = strip_accents(text.translate(_APOSTROPHES)).lower()
    return _SPACES.sub(" ", t).strip()


def compact(text: str) -> str:
    """Only letters and digits: `" S.T.O.P!! "` -> `"stop"`, `"Opt-Out"` -> `"optout"`."""
    return _NON_ALNUM.sub("", normalize(text))


def words(text: str) -> list[str]:
    return [w for w in _NON_ALNUM.split(normalize(text)) if w]
