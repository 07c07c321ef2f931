"""Match a reply against the rules (data in `rules.py`) and extract promise details."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from arrears_shared.events import Intent

from .extract import extract_amount_minor, extract_date
from .normalize import compact, normalize, words
from .rules import COURTESY_WORDS, FALLBACK_CONFIDENCE, RULES, Match, Needs, Rule


@dataclass(frozen=True, slots=True)
class Classification:
    intent: Intent
    confidence: float
    rule: str
    promise_amount_minor: int | None = None
    promise_date: date | None = None


def _matches(rule: Rule, norm: str, flat: str, tokens: list[str]) -> bool:
    if rule.match is Match.KEYWORD:
        return flat in rule.keywords
    if rule.match is Match.KEYWORD_POLITE:
        hits = [w for w in tokens if w in rule.keywords]
        if flat.startswith("optout") or " opt out" in f" {norm}":
            rest = [w for w in tokens if w not in ("opt", "out", "optout")]
            return all(w in COURTESY_WORDS for w in rest)
        return len(set(hits)) == 1 and all(w in rule.keywords or w in COURTESY_WORDS for w in tokens)
    return any(p.search(norm) for p in rule.compiled)


def classify(text: str, received_at: datetime | date | None = None) -> Classification:
    """Classify one reply. `received_at` anchors relative dates ("Friday", "tomorrow")."""
    today = (
        received_at.date()
        if isinstance(received_at, datetime)
        else received_at
        if isinstance(received_at, date)
        else date.today()
    )
    norm = normalize(text)
    flat = compact(text)
    tokens = words(text)
    amount: int | None = None
    when: date | None = None
    details_done = False
    for rule in RULES:
        if rule.needs is Needs.PROMISE_DETAILS or rule.intent is Intent.PROMISE_TO_PAY:
            if not details_done:
                amount, when, details_done = extract_amount_minor(text), extract_date(text, today), True
            if rule.needs is Needs.PROMISE_DETAILS and amount is None and when is None:
                continue
        if _matches(rule, norm, flat, tokens):
            if rule.intent is Intent.PROMISE_TO_PAY:
                return Classification(rule.intent, rule.confidence, rule.name, amount, when)
            return Classification(rule.intent, rule.confidence, rule.name)
    return Classification(Intent.OTHER, FALLBACK_CONFIDENCE, "fallback")
