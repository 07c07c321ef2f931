"""Classifier: a labelled set of realistic replies (typos, casing, mixed language); accuracy >= 95% (set in replies_labelled.yaml),
and the compliance-critical cases must all be right."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from arrears_responses.intents import classify
from arrears_responses.intents.extract import extract_amount_minor, extract_date
from arrears_shared.events import Intent

# Received on Wednesday 2026-11-25 (UTC); "Friday" = 2026-11-27.
RECEIVED = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)

LABELLED_FILE = Path(__file__).with_name("replies_labelled.yaml")


def load_labelled() -> list[tuple[str, Intent]]:
    """Every labelled reply: the tuning groups and the `held_out` groups (written after the rules)."""
    data = yaml.safe_load(LABELLED_FILE.read_text(encoding="utf-8"))
    held_out = data.pop("held_out", {})
    return [
        (str(text), Intent(intent))
        for groups in (data, held_out)
        for intent, texts in groups.items()
        for text in texts
    ]


LABELLED = load_labelled()

# Compliance-critical: must be exactly right, not just on average.
MUST_BE_OPT_OUT = ["STOP", "stop", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT",
                   "optout", "Stop.", "STOP por favor", "please stop texting me", "Don't text me anymore",
                   "remove me from your list"]  # fmt: skip
MUST_NOT_BE_OPT_OUT = ["don't stop", "stop calling me at work", "Please don't stop the reminders",
                       "call me", "I'll pay Friday, don't cancel my account"]  # fmt: skip


def test_labelled_set_accuracy() -> None:
    """>= 150 realistic replies, >= 95% right; prints accuracy, the confusion matrix and every miss."""
    assert len(LABELLED) >= 150
    assert len({t for t, _ in LABELLED}) == len(LABELLED), "duplicate texts in the labelled set"
    confusion: Counter[tuple[Intent, Intent]] = Counter()
    wrong = []
    for text, expected in LABELLED:
        got = classify(text, RECEIVED)
        confusion[(expected, got.intent)] += 1
        if got.intent is not expected:
            wrong.append((text, expected.value, got.intent.value, got.rule))
    accuracy = 1 - len(wrong) / len(LABELLED)
    print(f"\nintent classification: {len(LABELLED) - len(wrong)}/{len(LABELLED)} = {accuracy:.1%}")
    intents = list(Intent)
    short = {i: i.value[:8] for i in intents}
    print("  expected \\ got  " + " ".join(f"{short[i]:>8}" for i in intents) + "   recall")
    for exp in intents:
        row = [confusion[(exp, got)] for got in intents]
        n = sum(row)
        if n:
            cells = " ".join(f"{c:>8}" if c else f"{'.':>8}" for c in row)
            print(f"  {exp.value:<16} {cells}   {row[intents.index(exp)] / n:6.1%}")
    for w in wrong:
        print("  MISS", w)
    assert accuracy >= 0.95
    # every compliance-relevant class is itself good, not only the average
    for intent in (Intent.OPT_OUT, Intent.HELP):
        n = sum(confusion[(intent, g)] for g in intents)
        assert confusion[(intent, intent)] == n, f"{intent.value}: every one must be recognised"
    false_opt_outs = [w for w in wrong if w[2] == Intent.OPT_OUT.value]
    assert not false_opt_outs, f"replies wrongly taken as opt-outs: {false_opt_outs}"


@pytest.mark.parametrize("text", MUST_BE_OPT_OUT)
def test_opt_out_keywords_and_revocations(text: str) -> None:
    c = classify(text, RECEIVED)
    assert c.intent is Intent.OPT_OUT
    assert c.confidence >= 0.9


@pytest.mark.parametrize("text", ["STOP", "stopall", " opt out ", "U N S U B S C R I B E"])
def test_exact_keyword_confidence_is_one(text: str) -> None:
    assert classify(text, RECEIVED).confidence == 1.0


@pytest.mark.parametrize("text", MUST_NOT_BE_OPT_OUT)
def test_not_an_sms_opt_out(text: str) -> None:
    assert classify(text, RECEIVED).intent is not Intent.OPT_OUT


def test_work_contact_restriction_is_low_confidence_other() -> None:
    c = classify("Stop calling me at work", RECEIVED)
    assert c.intent is Intent.OTHER and c.rule == "no_contact_at_work" and c.confidence < 0.9


def test_promise_amount_and_relative_weekday() -> None:
    c = classify("I'll pay $200 on Friday", RECEIVED)
    assert c.intent is Intent.PROMISE_TO_PAY
    assert c.promise_amount_minor == 20_000
    assert c.promise_date == date(2026, 11, 27)


@pytest.mark.parametrize(
    ("text", "amount", "when"),
    [
        ("will pay next week", None, date(2026, 11, 30)),
        ("I can pay 50 dollars tomorrow", 5_000, date(2026, 11, 26)),
        ("I will make a payment of $1,275.50 by 12/1", 127_550, date(2026, 12, 1)),
        ("gonna pay the rest on the 15th", None, date(2026, 12, 15)),
        ("pay you Wednesday", None, date(2026, 12, 2)),
        ("I'll pay Dec 3rd", None, date(2026, 12, 3)),
        ("will pay in 2 weeks", None, date(2026, 12, 9)),
    ],
)
def test_promise_extraction(text: str, amount: int | None, when: date | None) -> None:
    c = classify(text, RECEIVED)
    assert c.intent is Intent.PROMISE_TO_PAY
    assert (c.promise_amount_minor, c.promise_date) == (amount, when)


def test_extractors_directly() -> None:
    assert extract_amount_minor("$0") is None
    assert extract_amount_minor("USD 12.5") == 1_250
    assert extract_amount_minor("no money here") is None
    assert extract_date("end of the month", date(2026, 2, 10)) == date(2026, 2, 28)
    assert extract_date("friday", date(2026, 11, 27)) == date(2026, 12, 4)  # said on a Friday: next one
    assert extract_date("13/45", date(2026, 1, 1)) is None
