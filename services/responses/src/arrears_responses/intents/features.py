"""What the model sees of a reply: word 1-2-grams and character 2-5-grams within words, over the
normalised text (lower case, accents removed, digits folded to `0`), plus a few signal features from the
promise extractor. The same function feeds scikit-learn at training time (as the vectoriser's `analyzer`)
and the numpy scorer at run time, so the two cannot drift."""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import date
from pathlib import Path

from .extract import extract_amount, extract_date, extract_plan
from .lexicon import lexicon
from .normalize import normalize

HERE = Path(__file__).parent
# the code and data that turn a reply into features: a model is only valid with the same ones
FEATURE_SOURCES = ("features.py", "extract.py", "clean.py", "normalize.py", "lexicon.py")

_TOKEN = re.compile(r"[a-z0-9$€]+(?:'[a-z]+)?|[^\sa-z0-9]")
_DIGIT = re.compile(r"\d")
CHAR_N = (2, 5)
SIGNAL_WEIGHT = 8  # a signal counts like this many occurrences (tf 1 + ln 8 = 3.1): not drowned by n-grams


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(_DIGIT.sub("0", normalize(text)))


def features(text: str, signals: tuple[str, ...] = ()) -> list[str]:
    toks = tokens(text)
    out = [f"w:{t}" for t in toks]
    out += [f"b:{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]
    lo, hi = CHAR_N
    for t in toks:
        if not t[0].isalnum() and t[0] not in "$€":
            continue  # punctuation and emoji are word features only
        padded = f" {t} "
        for n in range(lo, hi + 1):
            out += [f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1)]
    if len(toks) <= 2:
        out.append("x:short")
    out += [f"x:{s}" for s in signals for _ in range(SIGNAL_WEIGHT)]
    return out


@functools.cache
def features_sha256() -> str:
    """Hash of everything that turns a reply into features (this module, the signals, the extractors, the
    cleaning, the locale files). Stored with every trained model; a model with another hash is not used."""
    h = hashlib.sha256()
    for path in [*(HERE / name for name in FEATURE_SOURCES), *sorted((HERE / "locales").glob("*.yaml"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def signals(text: str) -> tuple[str, ...]:
    """Extractor hints the model sees as features (does the reply name money, a date, a plan?)."""
    out = []
    if extract_amount(text) is not None:
        out.append("amount")
    if extract_date(text, date(2026, 1, 1)) is not None:
        out.append("date")
    if extract_plan(text) is not None:
        out.append("plan")
    norm = normalize(text)
    out += [f"cue:{name}" for name, pattern in lexicon().cues.items() if pattern.search(norm)]
    return tuple(out)


def model_features(text: str) -> list[str]:
    return features(text, signals(text))
