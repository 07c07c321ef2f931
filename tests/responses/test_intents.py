"""Reply understanding (issue 12): the safety rules, the corpus and its split, the trained model (parity of
the numpy scorer with scikit-learn, metrics reproducible from the corpus), the confidence / fail-safe
logic, email cleaning and promise extraction in English and Spanish.

The headline figures (accuracy, opt-out recall/precision, latency) are printed by `make bench-intents`."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pytest
from arrears_responses.intents import ReplyClassifier, classify
from arrears_responses.intents.classifier import bundled_model
from arrears_responses.intents.clean import reply_text
from arrears_responses.intents.corpus import (
    SPLIT_FILE,
    TRAIN_ONLY_PREFIXES,
    corpus_sha256,
    load_corpus,
    load_split,
    make_split,
    same_text,
    split_corpus,
)
from arrears_responses.intents.extract import extract_amount, extract_date, extract_plan, extract_promise
from arrears_responses.intents.features import features_sha256, model_features
from arrears_responses.intents.lexicon import lexicon
from arrears_responses.intents.model import IntentModel
from arrears_responses.intents.safety import keyword_intent
from arrears_responses.intents.train import CLASSES, _fit, _text
from arrears_shared.events import Intent

CORPUS = load_corpus()
WEDNESDAY = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)

# -- safety rules ---------------------------------------------------------------------------------------
EN_OPT_OUT = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
    "STOP ALL",
]
ES_OPT_OUT = ["ALTO", "PARAR", "PARE", "DETENER", "CANCELAR", "BAJA", "DARSE DE BAJA", "NO MÁS"]
HELP = ["HELP", "INFO", "AYUDA"]


def variants(keyword: str) -> list[str]:
    lower = keyword.lower()
    return [
        keyword, lower, keyword.title(), f" {keyword}!!! ", f"{lower}.", f"*{keyword}*",
        " ".join(keyword.replace(" ", "")),  # S T O P
        "-".join(keyword.split()) if " " in keyword else keyword + "?",
        keyword.replace("A", "Á").replace("E", "É").replace("O", "Ó"),  # accents where none belong
        keyword.replace("Á", "A"),  # accents missing
    ]  # fmt: skip


@pytest.mark.parametrize("keyword", EN_OPT_OUT + ES_OPT_OUT)
def test_every_carrier_opt_out_keyword_always_wins(keyword: str) -> None:
    for text in variants(keyword):
        assert keyword_intent(text) == (Intent.OPT_OUT, "opt_out_keyword"), text
        c = classify(text, WEDNESDAY)
        assert (c.intent, c.confidence, c.needs_review) == (Intent.OPT_OUT, 1.0, False), text


@pytest.mark.parametrize("keyword", HELP)
def test_help_keywords(keyword: str) -> None:
    for text in variants(keyword):
        c = classify(text, WEDNESDAY)
        assert (c.intent, c.confidence, c.rule) == (Intent.HELP, 1.0, "help_keyword"), text


@pytest.mark.parametrize(
    "text", ["STOP please", "stop pls", "ALTO por favor", "Baja porfa", "PARAR ya", "ok stop"]
)
def test_keyword_with_courtesy_words_is_an_opt_out(text: str) -> None:
    assert keyword_intent(text) == (Intent.OPT_OUT, "opt_out_keyword_polite")


@pytest.mark.parametrize(
    "text",
    [
        "STOP. I will pay 200 on the 15th",  # an opt-out wins over the promise next to it
        "ALTO, le pago el viernes",
        "Unsubscribe. I dispute this debt",
        "STOP I already paid",  # a capitalised keyword opening the reply
        "I already paid STOP",
        "who is this? stop",
        "STOP. Thanks",
    ],
)
def test_a_stop_keyword_as_its_own_sentence_wins(text: str) -> None:
    assert keyword_intent(text) == (Intent.OPT_OUT, "opt_out_keyword_sentence")
    assert classify(text, WEDNESDAY).intent is Intent.OPT_OUT


@pytest.mark.parametrize(
    "text",
    [
        "don't stop", "I never said stop", "stop by the office", "fin de mes te pago", "alto el saldo",
        "end of month", "cancel my autopay", "DON'T STOP", "PLEASE DON'T STOP SENDING", "please don't STOP",
        "STOP CALLING ME AT WORK", "end it all", "The end", "Ok fin", "Cancelar todo", "you end", "bus stop",
    ],
)  # fmt: skip
def test_a_keyword_inside_a_sentence_is_not_a_rule_match(text: str) -> None:
    assert keyword_intent(text) is None


def test_every_locale_has_keywords_and_the_corpus_covers_it() -> None:
    lx = lexicon()
    assert set(lx.locales) >= {"en", "es"}
    langs = {e.lang for e in CORPUS}
    for locale in lx.locales:
        assert locale in langs, f"locale {locale} has no labelled replies"
        covered = {e.intent for e in CORPUS if e.lang == locale}
        assert covered == set(Intent), f"{locale} misses intents {set(Intent) - covered}"


# -- corpus and split -----------------------------------------------------------------------------------
def test_corpus_size_labels_and_split() -> None:
    independent = [e for e in CORPUS if not e.id.startswith(TRAIN_ONLY_PREFIXES)]
    assert len(independent) >= 1000
    assert len({e.id for e in CORPUS}) == len(CORPUS), "duplicate ids"
    by_lang = Counter(e.lang for e in independent)
    assert by_lang["en"] >= 300 and by_lang["es"] >= 300, by_lang
    assert Counter(e.channel for e in independent)["email"] >= 200
    for e in CORPUS:
        assert (e.promise is not None) <= (e.intent is Intent.PROMISE_TO_PAY), e.id
    test_ids = load_split()
    ids = {e.id for e in CORPUS}
    assert test_ids <= ids, "the split names replies that are not in the corpus"
    assert not any(i.startswith(TRAIN_ONLY_PREFIXES) for i in test_ids)
    train, test = split_corpus(CORPUS, test_ids)
    assert len(test) == len(test_ids) and len(train) + len(test) <= len(CORPUS)
    assert {e.intent for e in test} == set(Intent)
    held_out = {same_text(e.text) for e in test}
    leaked = [e.id for e in train if same_text(e.text) in held_out]
    assert not leaked, f"test replies also in training: {leaked}"
    assert len(CORPUS) - len(train) - len(test) < 0.05 * len(CORPUS), "most duplicates of test replies?"


def test_split_was_made_once_with_the_fixed_seed() -> None:
    """The split is stable: made from the first-round files with its seed; later replies only train."""
    recorded = json.loads(SPLIT_FILE.read_text())
    first_round = [e for e in CORPUS if re.fullmatch(r"(?:en-sms|es-sms|email)-\d{4}", e.id)]
    assert make_split(first_round, recorded["seed"])["test"] == recorded["test"]


# -- the model --------------------------------------------------------------------------------------------
def test_shipped_model_is_trained_from_this_corpus() -> None:
    meta = bundled_model().meta
    assert meta["corpus_sha256"] == corpus_sha256(), "corpus changed: run `arrears intents train`"
    assert meta["features_sha256"] == features_sha256(), "feature code changed: run `arrears intents train`"
    assert meta["metrics"]["n"] == len(load_split())


def test_numpy_scorer_matches_scikit_learn() -> None:
    sample = CORPUS[::4]
    vec, clf = _fit([_text(e) for e in sample], [CLASSES.index(e.intent) for e in sample])
    model = IntentModel(
        vocabulary={k: int(v) for k, v in vec.vocabulary_.items()},
        idf=vec.idf_,
        weights=clf.coef_.T,
        intercept=clf.intercept_,
        classes=tuple(CLASSES[i] for i in clf.classes_),
    )
    texts = ["i'll pay 50 on friday thx", "ya no me manden mensajes!!", "🙄", "", "WRONG # who is Dana"]
    ours = np.array([model.logits(model_features(t)) for t in texts])
    theirs = clf.decision_function(vec.transform(texts))
    assert np.allclose(ours, theirs, atol=1e-9)
    again = IntentModel.from_bytes(model.to_bytes())
    assert np.allclose([again.logits(model_features(t)) for t in texts], theirs, atol=1e-5)


def _toy_model(p: dict[Intent, float]) -> IntentModel:
    """A model whose probabilities for any text containing 'hmm' are `p` (softmax of log p)."""
    weights = np.zeros((1, len(CLASSES)))
    intercept = np.array([np.log(p.get(c, 1e-6)) for c in CLASSES])
    return IntentModel({"w:hmm": 0}, np.ones(1), weights, intercept, CLASSES, meta={"version": "toy"})


def test_confident_replies_are_acted_on() -> None:
    c = ReplyClassifier(_toy_model({Intent.DISPUTE: 0.9, Intent.OTHER: 0.1})).classify("hmm", WEDNESDAY)
    assert (c.intent, c.needs_review, c.possible_opt_out, c.rule) == (Intent.DISPUTE, False, False, "model")
    assert c.confidence == pytest.approx(0.9, abs=1e-3) and c.model_version == "toy"


def test_unsure_replies_go_to_a_person_without_action() -> None:
    c = ReplyClassifier(_toy_model({Intent.DISPUTE: 0.45, Intent.OTHER: 0.4, Intent.HELP: 0.15})).classify(
        "hmm"
    )
    assert (c.intent, c.suggested_intent, c.needs_review, c.possible_opt_out) == (
        Intent.OTHER,
        Intent.DISPUTE,
        True,
        False,
    )
    assert c.rule == "review"


@pytest.mark.parametrize(
    "probs",
    [
        {Intent.OPT_OUT: 0.45, Intent.OTHER: 0.55},  # the best guess is other, but it may well be an opt-out
        {Intent.OPT_OUT: 0.45, Intent.OTHER: 0.35, Intent.HELP: 0.2},  # opt-out best, not sure enough
        {Intent.DISPUTE: 0.7, Intent.OPT_OUT: 0.3},  # a confident dispute that may also be an opt-out
    ],
)
def test_a_possible_opt_out_is_fail_safe(probs: dict[Intent, float]) -> None:
    c = ReplyClassifier(_toy_model(probs)).classify("hmm")
    assert c.possible_opt_out and c.needs_review
    assert c.intent is not Intent.OPT_OUT, "an unsure opt-out is not acted on as one: a person decides"


def test_a_confident_opt_out_is_not_held_for_review() -> None:
    c = ReplyClassifier(_toy_model({Intent.OPT_OUT: 0.95, Intent.OTHER: 0.05})).classify("hmm")
    assert (c.intent, c.needs_review, c.possible_opt_out) == (Intent.OPT_OUT, False, False)


def test_an_opt_out_is_acted_on_only_when_the_model_is_quite_sure() -> None:
    """An opt-out is permanent: between the review threshold and `opt_out_at` the reply is held for a
    person (fail-safe) instead of opting the customer out."""
    toy = _toy_model({Intent.OPT_OUT: 0.6, Intent.OTHER: 0.4})
    c = ReplyClassifier(toy).classify("hmm")
    assert (c.intent, c.suggested_intent, c.needs_review, c.possible_opt_out) == (
        Intent.OTHER,
        Intent.OPT_OUT,
        True,
        True,
    )
    assert ReplyClassifier(toy, opt_out_at=0.55).classify("hmm").intent is Intent.OPT_OUT
    other = _toy_model({Intent.DISPUTE: 0.6, Intent.OTHER: 0.4})
    assert ReplyClassifier(other).classify("hmm").intent is Intent.DISPUTE  # the usual threshold elsewhere


def test_thresholds_are_configurable() -> None:
    toy = _toy_model({Intent.OPT_OUT: 0.05, Intent.OTHER: 0.95})
    assert not ReplyClassifier(toy).classify("hmm").possible_opt_out
    assert ReplyClassifier(toy, possible_opt_out_at=0.04).classify("hmm").possible_opt_out
    assert ReplyClassifier(toy, review_below=0.95).classify("hmm").needs_review


def test_empty_reply_goes_to_a_person() -> None:
    c = classify("  \n \n", channel="email")
    assert (c.intent, c.needs_review, c.rule) == (Intent.OTHER, True, "empty")
    # quotes only (nothing new above or below): the whole text is judged, never nothing
    quoted = "On Tue, Nov 24, 2026 at 9:02 AM Acme <a@b.example> wrote:\n> please stop texting me\n"
    assert classify(quoted, channel="email").rule != "empty"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Please stop texting me", Intent.OPT_OUT),
        ("ya no me manden mensajes por favor", Intent.OPT_OUT),
        ("I'll pay $200 on Friday", Intent.PROMISE_TO_PAY),
        ("wrong number", Intent.WRONG_NUMBER),
        ("this is not my debt", Intent.DISPUTE),
        ("ya pagué", Intent.PAID_CLAIM),
        ("can someone call me", Intent.CALLBACK_REQUEST),
        ("I lost my job and can't pay right now", Intent.HARDSHIP),
        ("who is this?", Intent.HELP),
    ],
)
def test_plain_replies_in_both_languages(text: str, intent: Intent) -> None:
    c = classify(text, WEDNESDAY)
    assert (c.suggested_intent or c.intent) is intent, c


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("YA NO ME MANDEN MENSAJES 😡", Intent.OPT_OUT),  # caps, emoji
        ("ya no me manden mas msjs", Intent.OPT_OUT),  # accents missing, shorthand
        ("stop txtn me", Intent.OPT_OUT),  # typo
        ("pls remove my #", Intent.OPT_OUT),
        ("STOP texting me, i will pay friday", Intent.OPT_OUT),  # an opt-out wins over a promise
        ("Unsubscribe me from texts pls", Intent.OPT_OUT),
        ("dont stop", Intent.OTHER),  # negation
        ("I never said stop", Intent.OTHER),
        ("Please keep the reminders coming", Intent.OTHER),
        ("no me llamen al trabajo porfa", Intent.OTHER),  # a place restriction, not an opt-out
        ("te pago el viernes, no dejes de avisarme", Intent.PROMISE_TO_PAY),  # mixed signals
        ("k thx 👍", Intent.OTHER),
        ("i can do 50 a wk", Intent.PROMISE_TO_PAY),
    ],
)
def test_messy_replies(text: str, intent: Intent) -> None:
    c = classify(text, WEDNESDAY)
    assert (c.suggested_intent or c.intent) is intent, c


# -- email cleaning ---------------------------------------------------------------------------------------
def test_email_quotes_signatures_and_client_footers_are_not_the_reply() -> None:
    body = (
        "Paid it yesterday, confirmation 1234.\n\nSent from my iPhone\n\n"
        "On Tue, Nov 24, 2026 at 9:02 AM Acme Collections <\nbilling@acme.example> wrote:\n"
        "> Your balance of $200 is past due. Reply STOP to opt out.\n"
    )
    assert reply_text(body) == "Paid it yesterday, confirmation 1234."
    outlook = "No me escriban más.\n\n________________________________\nDe: Acme <a@b.example>\nEnviado: martes\nAsunto: Saldo vencido\n\nPague ya o llame."
    assert reply_text(outlook) == "No me escriban más."
    spanish = "te pago el viernes\n\nEl mar, 24 nov 2026 a las 9:02, Acme (<a@b.example>) escribió:\n> STOP para no recibir"
    assert reply_text(spanish) == "te pago el viernes"
    bottom = "On Tue, Nov 24, 2026 at 9:02 AM Acme <a@b.example> wrote:\n> Reply STOP to opt out\n\nplease remove me"
    assert reply_text(bottom) == "please remove me"
    assert reply_text("On friday I will pay 200.\n--\nJohn") == "On friday I will pay 200."
    # the customer's own lines that look like headers are kept: only a real header block ends the text
    assert (
        reply_text("To: whoever reads this\nStop emailing me.") == "To: whoever reads this Stop emailing me."
    )
    assert reply_text("De: Maria\nno me escriban mas") == "De: Maria no me escriban mas"
    assert reply_text("Confidential: I am sick\nstop") == "Confidential: I am sick stop"


def test_quoted_stop_footer_does_not_make_a_promise_an_opt_out() -> None:
    body = "I'll pay $150 on Friday.\n\nOn Tue, Nov 24, 2026 at 9:02 AM Acme <a@b.example> wrote:\n> Reply STOP to unsubscribe. Call us."
    c = classify(body, WEDNESDAY, channel="email")
    assert c.suggested_intent is Intent.PROMISE_TO_PAY and not c.possible_opt_out


# -- promise extraction -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "today", "amount", "currency", "when", "plan"),
    [
        ("I'll pay $200 on Friday", date(2026, 11, 25), 20_000, "USD", date(2026, 11, 27), None),
        ("pay u friday", date(2026, 11, 27), None, None, date(2026, 12, 4), None),  # said on a Friday
        ("next Friday", date(2026, 11, 25), None, None, date(2026, 11, 27), None),
        ("on the 15th", date(2026, 11, 25), None, None, date(2026, 12, 15), None),
        ("the 15th", date(2026, 11, 15), None, None, date(2026, 11, 15), None),
        ("end of the month", date(2026, 2, 10), None, None, date(2026, 2, 28), None),
        ("I can do $50 a week starting Friday", date(2026, 11, 25), 5_000, "USD", date(2026, 11, 27), "week"),
        ("100 every two weeks", date(2026, 11, 25), 10_000, "USD", None, "fortnight"),
        ("$1,275.50 by 12/1", date(2026, 11, 25), 127_550, "USD", date(2026, 12, 1), None),
        ("in 2 weeks", date(2026, 11, 25), None, None, date(2026, 12, 9), None),
        ("next week", date(2026, 11, 25), None, None, date(2026, 11, 30), None),
        ("te pago 300 el viernes", date(2026, 11, 25), 30_000, "USD", date(2026, 11, 27), None),
        ("el próximo viernes", date(2026, 11, 25), None, None, date(2026, 11, 27), None),
        ("le puedo dar 40 semanales", date(2026, 11, 25), 4_000, "USD", None, "week"),
        ("200 al mes", date(2026, 11, 25), 20_000, "USD", None, "month"),
        ("100 cada quincena", date(2026, 11, 25), 10_000, "USD", None, "fortnight"),
        ("pasado mañana pago 100 dólares", date(2026, 11, 25), 10_000, "USD", date(2026, 11, 27), None),
        ("a fin de mes", date(2026, 11, 25), None, None, date(2026, 11, 30), None),
        ("300 pesos el 30 de noviembre", date(2026, 11, 25), 30_000, "MXN", date(2026, 11, 30), None),
        ("el 5 de enero", date(2026, 12, 20), None, None, date(2027, 1, 5), None),
        ("mañana en la mañana", date(2026, 12, 31), None, None, date(2027, 1, 1), None),
        ("el mes que viene", date(2026, 11, 25), None, None, date(2026, 12, 1), None),
        ("€80 on Monday", date(2026, 11, 25), 8_000, "EUR", date(2026, 11, 30), None),
    ],
)
def test_promise_details(
    text: str, today: date, amount: int | None, currency: str | None, when: date | None, plan: str | None
) -> None:
    p = extract_promise(text, today)
    assert (p.amount_minor, p.currency, p.date, p.plan_every) == (amount, currency, when, plan)


def test_promise_dates_resolve_in_the_debtors_time_zone() -> None:
    # 03:00 UTC on Thursday is still Wednesday evening in Los Angeles: "tomorrow" is Thursday there
    received = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    c = classify("I'll pay $100 tomorrow", received, timezone="America/Los_Angeles")
    assert c.promise_date == date(2026, 11, 26)
    assert classify("I'll pay $100 tomorrow", received, timezone="Asia/Tokyo").promise_date == date(
        2026, 11, 27
    )


def test_account_currency_is_the_default_for_bare_amounts() -> None:
    assert extract_amount("can I do 50 a week", "MXN", allow_bare=True) == (5_000, "MXN")
    assert extract_amount("$50", "MXN") == (5_000, "USD")
    assert extract_amount("call me at 5", allow_bare=True) is None
    assert extract_amount("$0") is None
    assert extract_date("13/45", date(2026, 1, 1)) is None
    assert extract_plan("I will pay in a week") is None


def test_promise_extraction_on_every_labelled_promise() -> None:
    """Amount, currency, date and plan against every promise in the corpus with details (both languages);
    prints the misses. Dates resolve from each reply's local date."""
    checks: Counter[str] = Counter()
    misses = []
    for e in CORPUS:
        if e.intent is not Intent.PROMISE_TO_PAY or e.promise is None:
            continue
        body = _text(e)
        p = extract_promise(body, e.local_date, e.promise.get("currency") or "USD")
        want_amount = None if e.promise["amount"] is None else int(Decimal(e.promise["amount"]) * 100)
        got = {
            "amount": p.amount_minor == want_amount,
            "date": (p.date.isoformat() if p.date else None) == e.promise["date"],
            "plan": p.plan_every == e.promise["plan_every"],
        }
        checks["n"] += 1
        for k, ok in got.items():
            checks[k] += ok
        if not all(got.values()):
            misses.append((e.id, body[:80], e.promise, (p.amount_minor, p.date, p.plan_every)))
    for m in misses:
        print("  MISS", m)
    n = checks["n"]
    print(
        f"promises n={n} amount={checks['amount'] / n:.3f} date={checks['date'] / n:.3f} plan={checks['plan'] / n:.3f}"
    )
    assert n >= 200
    for k in ("amount", "date", "plan"):
        assert checks[k] / n >= 0.9, k
