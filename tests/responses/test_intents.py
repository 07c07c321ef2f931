"""Classifier: a labelled set of realistic replies (typos, casing, mixed language); accuracy >= 90%,
and the compliance-critical cases must all be right."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from arrears_responses.intents import classify
from arrears_responses.intents.extract import extract_amount_minor, extract_date
from arrears_shared.events import Intent

# Received on Wednesday 2026-11-25 (UTC); "Friday" = 2026-11-27.
RECEIVED = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)

OP, H, C, P, T, D, W, X, Z = (
    Intent.OPT_OUT,
    Intent.HELP,
    Intent.CALLBACK_REQUEST,
    Intent.PAID_CLAIM,
    Intent.PROMISE_TO_PAY,
    Intent.DISPUTE,
    Intent.WRONG_NUMBER,
    Intent.HARDSHIP,
    Intent.OTHER,
)

LABELLED: list[tuple[str, Intent]] = [
    ("STOP", OP), ("stop", OP), ("Stop.", OP), (" STOP!!! ", OP), ("STOPALL", OP), ("Unsubscribe", OP),
    ("CANCEL", OP), ("end", OP), ("Quit", OP), ("REVOKE", OP), ("OPT OUT", OP), ("opt-out", OP), ("OptOut", OP),
    ("STOP por favor", OP), ("stop please", OP), ("Stop it now", OP), ("please stop texting me", OP),
    ("Don't text me anymore", OP), ("remove me from your list", OP), ("Take me off this list pls", OP),
    ("no more texts", OP), ("Stop sending me these messages!!", OP), ("leave me alone", OP),
    ("no me manden mas mensajes", OP), ("dont message me again", OP),
    ("HELP", H), ("info", H), ("who is this?", H), ("what is this about", H),
    ("call me", C), ("Can someone call me?", C), ("give me a call tomorrow afternoon", C),
    ("pls call me back at 5", C), ("I want to speak to someone", C),
    ("I already paid", P), ("paid yesterday", P), ("i allready paid this", P), ("I paid it last week", P),
    ("Payment was made on the 3rd", P), ("I sent the check last monday", P), ("ya pague", P),
    ("I'll pay $200 on Friday", T), ("will pay next week", T), ("I can pay 50 dollars tomorrow", T),
    ("gonna pay the rest on the 15th", T), ("I will make a payment of $75.50 by 12/1", T),
    ("ill pay friday", T), ("I promise to pay soon", T),
    ("not my debt", D), ("I dispute this", D), ("I don't owe you anything", D), ("This is a scam", D),
    ("never had an account with you", D),
    ("wrong number", W), ("Wrong # sorry", W), ("you have the wrong person", W), ("numero equivocado", W),
    ("I lost my job", X), ("can't afford it right now", X), ("I was laid off last month", X),
    ("in the hospital, medical bills piling up", X), ("I'm unemployed", X), ("need a payment plan", X),
    ("don't stop", Z), ("stop calling me at work", Z), ("ok", Z), ("thanks", Z), ("who cares", Z),
    ("Don't call me at work", Z), ("👍", Z),
]  # fmt: skip

# Compliance-critical: must be exactly right, not just on average.
MUST_BE_OPT_OUT = ["STOP", "stop", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT",
                   "optout", "Stop.", "STOP por favor", "please stop texting me", "Don't text me anymore",
                   "remove me from your list"]  # fmt: skip
MUST_NOT_BE_OPT_OUT = ["don't stop", "stop calling me at work", "Please don't stop the reminders",
                       "call me", "I'll pay Friday, don't cancel my account"]  # fmt: skip


def test_labelled_set_accuracy() -> None:
    assert len(LABELLED) >= 60
    wrong = []
    per_intent: dict[Intent, list[int]] = {}
    for text, expected in LABELLED:
        got = classify(text, RECEIVED)
        ok = got.intent is expected
        per_intent.setdefault(expected, [0, 0])
        per_intent[expected][0] += ok
        per_intent[expected][1] += 1
        if not ok:
            wrong.append((text, expected.value, got.intent.value, got.rule))
    accuracy = 1 - len(wrong) / len(LABELLED)
    print(f"\nintent classification: {len(LABELLED) - len(wrong)}/{len(LABELLED)} = {accuracy:.1%}")
    for intent, (ok, n) in sorted(per_intent.items()):
        print(f"  {intent.value:<18} {ok}/{n}")
    for w in wrong:
        print("  MISS", w)
    assert accuracy >= 0.90


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
