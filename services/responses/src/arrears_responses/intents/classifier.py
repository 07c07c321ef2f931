"""Classify one reply: safety rules first, then the trained model, then promise details.

1. the text is cleaned (email quotes and signatures removed: clean.py);
2. an exact carrier keyword of any locale, or an opt-out word the reply's channel declares, decides
   (safety.py: opt-out / HELP, confidence 1);
3. otherwise the model's calibrated probabilities decide. Below `review_below` (for an opt-out, which is
   permanent: below `opt_out_at`) the reply is not acted on: its intent is `other` with `needs_review` (a
   person reads it; the model's guess is `suggested_intent`);
4. **fail-safe**: when the opt-out probability is at least `possible_opt_out_at` and the reply is not a
   confident opt-out, `possible_opt_out` is set: the dispatcher of that channel pauses messages to the
   account until a person decides (a correction of the reply's intent releases or confirms it);
5. for a promise to pay, amount / currency / date / instalment plan are extracted (extract.py), the date
   resolved in the debtor's time zone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from arrears_shared import clock
from arrears_shared.channels import kind_of
from arrears_shared.events import Intent

from .clean import reply_text
from .extract import PromiseDetails, extract_amount, extract_date, extract_plan
from .features import model_features
from .model import IntentModel
from .safety import keyword_intent

BUNDLED_MODEL = Path(__file__).with_name("model") / "intents.npz"
REVIEW_BELOW = 0.5
POSSIBLE_OPT_OUT_AT = 0.1
OPT_OUT_AT = 0.7  # an opt-out is permanent: the model acts on one only this sure; below, a person decides


@dataclass(frozen=True, slots=True)
class Classification:
    intent: Intent  # what automation acts on (`other` when sent to a person)
    confidence: float
    rule: str  # opt_out_keyword[_polite|_sentence|_channel] | help_keyword | model | review | empty
    promise_amount_minor: int | None = None
    promise_date: date | None = None
    promise_currency: str | None = None
    promise_plan_every: str | None = None
    suggested_intent: Intent | None = None  # the best guess, also when sent to a person
    needs_review: bool = False
    possible_opt_out: bool = False
    model_version: str | None = None

    def event_fields(self) -> dict[str, Any]:
        """The classification as `ReplyReceived` fields."""
        return {
            "intent": self.intent,
            "confidence": self.confidence,
            "promise_amount_minor": self.promise_amount_minor,
            "promise_date": self.promise_date,
            "promise_currency": self.promise_currency,
            "promise_plan_every": self.promise_plan_every,
            "suggested_intent": self.suggested_intent if self.needs_review else None,
            "needs_review": self.needs_review,
            "possible_opt_out": self.possible_opt_out,
            "model_version": self.model_version,
        }

    def columns(self) -> dict[str, Any]:
        """The classification as `responses.replies` bind parameters (see REPLY_COLUMNS)."""
        return {
            "intent": self.intent.value,
            "conf": self.confidence,
            "rule": self.rule,
            "amt": self.promise_amount_minor,
            "pd": self.promise_date,
            "pcur": self.promise_currency,
            "plan": self.promise_plan_every,
            "sugg": self.suggested_intent.value if self.suggested_intent else None,
            "review": self.needs_review,
            "poo": self.possible_opt_out,
            "mv": self.model_version,
        }


# the classification's columns of `responses.replies` and their bind parameters (Classification.columns)
REPLY_COLUMNS = (
    "intent, confidence, rule, promise_amount_minor, promise_date, promise_currency, promise_plan_every, "
    "suggested_intent, needs_review, possible_opt_out, model_version"
)
REPLY_VALUES = ":intent, :conf, :rule, :amt, :pd, :pcur, :plan, :sugg, :review, :poo, :mv"


def is_email(channel: str) -> bool:
    """Replies on an email channel (by its address kind) carry quotes and signatures to remove."""
    kind = kind_of(channel)
    return kind == "email" if kind else channel == "email"


def local_day(received_at: datetime | date | None, timezone: str | None) -> date:
    if isinstance(received_at, datetime):
        return clock.local_day(timezone, received_at)
    if isinstance(received_at, date):
        return received_at
    return datetime.now(UTC).date()


def promise_details(
    body: str,
    received_at: datetime | date | None,
    *,
    channel: str = "sms",
    timezone: str | None = None,
    currency: str | None = None,
) -> PromiseDetails:
    """Amount, currency, date (in the debtor's time zone) and instalment plan named in a reply."""
    if is_email(channel):
        body = reply_text(body) or body
    amount = extract_amount(body, currency or "USD", allow_bare=True)
    plan = extract_plan(body)
    return PromiseDetails(
        amount[0] if amount else None,
        amount[1] if amount else None,
        extract_date(body, local_day(received_at, timezone)),
        plan if amount or plan else None,
    )


class ReplyClassifier:
    def __init__(
        self,
        model: IntentModel,
        *,
        review_below: float = REVIEW_BELOW,
        possible_opt_out_at: float = POSSIBLE_OPT_OUT_AT,
        opt_out_at: float = OPT_OUT_AT,
    ) -> None:
        self.model = model
        self.review_below = review_below
        self.possible_opt_out_at = possible_opt_out_at
        self.opt_out_at = max(opt_out_at, review_below)
        self._opt_out = model.classes.index(Intent.OPT_OUT)

    def classify(
        self,
        text: str,
        received_at: datetime | date | None = None,
        *,
        channel: str = "sms",
        timezone: str | None = None,
        currency: str | None = None,
    ) -> Classification:
        body = reply_text(text) if is_email(channel) else " ".join(text.split())
        version = self.model.version
        if not body:
            # nothing left after removing quotes and signatures: judge the whole text rather than nothing
            body = " ".join(text.split())
        if not body:
            return Classification(Intent.OTHER, 0.0, "empty", needs_review=True, model_version=version)
        if hit := keyword_intent(body, channel):
            intent, rule = hit
            return Classification(intent, 1.0, rule, suggested_intent=intent, model_version=version)
        p = self.model.proba(model_features(body))
        best = int(p.argmax())
        guess, confidence = self.model.classes[best], float(p[best])
        p_opt_out = float(p[self._opt_out])
        confident = confidence >= (self.opt_out_at if guess is Intent.OPT_OUT else self.review_below)
        intent = guess if confident else Intent.OTHER
        possible_opt_out = intent is not Intent.OPT_OUT and (
            guess is Intent.OPT_OUT or p_opt_out >= self.possible_opt_out_at
        )
        details = PromiseDetails()
        if guess is Intent.PROMISE_TO_PAY:
            details = promise_details(body, received_at, timezone=timezone, currency=currency)
        return Classification(
            intent,
            round(confidence, 4),
            "model" if confident else "review",
            promise_amount_minor=details.amount_minor,
            promise_date=details.date,
            promise_currency=details.currency,
            promise_plan_every=details.plan_every,
            suggested_intent=guess,
            needs_review=not confident or possible_opt_out,
            possible_opt_out=possible_opt_out,
            model_version=version,
        )


@functools.cache
def bundled_model() -> IntentModel:
    return IntentModel.load(BUNDLED_MODEL)


@functools.cache
def default_classifier() -> ReplyClassifier:
    return ReplyClassifier(bundled_model())


def classify(
    text: str,
    received_at: datetime | date | None = None,
    *,
    channel: str = "sms",
    timezone: str | None = None,
    currency: str | None = None,
) -> Classification:
    """Classify with the model shipped in the package (the service uses the active model instead)."""
    return default_classifier().classify(
        text, received_at, channel=channel, timezone=timezone, currency=currency
    )
