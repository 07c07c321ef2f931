"""Train, calibrate and evaluate the intent model (scikit-learn), export it as an `IntentModel`.

Training: TF-IDF (sublinear tf, min_df 2) over `features.features` -> a linear SVM (one-vs-rest, classes
balanced). Chosen by 5-fold cross-validation on the train split over logistic regression (C 5..80) and SVM
(C 0.3..16): the SVM at C=4 was best on accuracy and opt-out recall and precision (docs/intents.md).
Calibration: the SVM's margins become probabilities by a softmax with one temperature, the one that
minimises the log-loss of 5-fold out-of-fold margins on the training split (the ranking of intents is
unchanged; a "0.8" is then right about 80% of the time).
Evaluation: on the held-out test split only, never on what the model saw."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from arrears_shared.events import Intent

from .classifier import ReplyClassifier
from .clean import reply_text
from .corpus import Example
from .features import features_sha256, model_features
from .model import IntentModel

CLASSES: tuple[Intent, ...] = tuple(Intent)
C = 4.0
SEED = 20261204


def _text(e: Example) -> str:
    return reply_text(e.text) if e.channel == "email" else " ".join(e.text.split())


def _fit(texts: list[str], labels: list[int]) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vec = TfidfVectorizer(analyzer=model_features, sublinear_tf=True, min_df=2, dtype=np.float64)
    x = vec.fit_transform(texts)
    clf = LinearSVC(C=C, class_weight="balanced", random_state=SEED, max_iter=20_000)
    clf.fit(x, labels)
    return vec, clf


def _temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def _full_logits(clf: Any, x: Any) -> np.ndarray:
    """Decision scores for every class (a class absent from a fold's training data scores -inf)."""
    out = np.full((x.shape[0], len(CLASSES)), -1e9)
    out[:, clf.classes_] = clf.decision_function(x)
    return out


def train(
    examples: list[Example], *, extra: Sequence[tuple[str, Intent]] = (), meta: dict[str, Any] | None = None
) -> IntentModel:
    """Fit on `examples` (+ `extra` (text, intent) pairs, e.g. people's corrections)."""
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    texts = [_text(e) for e in examples] + [" ".join(t.split()) for t, _ in extra]
    labels = np.array([CLASSES.index(e.intent) for e in examples] + [CLASSES.index(i) for _, i in extra])
    oof = np.zeros((len(texts), len(CLASSES)))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    for tr, te in folds.split(texts, labels):
        vec, clf = _fit([texts[i] for i in tr], list(labels[tr]))
        oof[te] = _full_logits(clf, vec.transform([texts[i] for i in te]))
    temperature = _temperature(oof, labels)
    vec, clf = _fit(texts, list(labels))
    weights = np.zeros((len(vec.vocabulary_), len(CLASSES)))
    weights[:, clf.classes_] = clf.coef_.T
    intercept = np.full(len(CLASSES), -1e9)
    intercept[clf.classes_] = clf.intercept_
    import sklearn

    info = {
        "trained_at": datetime.now(UTC).isoformat(),
        "train_size": len(texts),
        "corrections": len(extra),
        "features": len(vec.vocabulary_),
        "temperature": round(temperature, 4),
        "train_seconds": round(time.perf_counter() - started, 2),
        "scikit_learn": sklearn.__version__,
        "features_sha256": features_sha256(),
        "C": C,
        **(meta or {}),
    }
    return IntentModel(
        vocabulary={k: int(v) for k, v in vec.vocabulary_.items()},
        idf=vec.idf_.astype(np.float64),
        weights=weights,
        intercept=intercept,
        classes=CLASSES,
        temperature=temperature,
        meta=info,
    )


@dataclass
class Report:
    n: int
    accuracy: float
    macro_f1: float
    per_intent: dict[str, dict[str, float]]
    opt_out_recall: float
    opt_out_precision: float
    fail_safe_recall: float  # opt-outs classified as opt-out OR held for a person
    acted_opt_out_precision: float  # of the replies acted on as opt-outs (confident), how many were
    acted_opt_out_recall: float  # of the opt-outs, how many were acted on as such without a person
    review_rate: float
    auto_accuracy: float  # accuracy on the replies acted on without a person
    promise: dict[str, float]
    p50_ms: float
    p99_ms: float
    misses: list[tuple[str, str, str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("misses")
        return d


def evaluate(classifier: ReplyClassifier, examples: list[Example]) -> Report:
    """Metrics on `examples` (the test split). The predicted intent is the classifier's best guess
    (`suggested_intent`): what a person sees; the review rate and auto accuracy say how often it is acted
    on without one."""
    gold: list[Intent] = []
    pred: list[Intent] = []
    durations: list[float] = []
    reviewed = auto_right = held_opt_outs = acted = acted_right = 0
    misses: list[tuple[str, str, str, float]] = []
    promise_checks: Counter[str] = Counter()
    for e in examples:
        t0 = time.perf_counter()
        c = classifier.classify(e.text, e.received_at, channel=e.channel)
        durations.append((time.perf_counter() - t0) * 1000)
        guess = c.suggested_intent or c.intent
        gold.append(e.intent)
        pred.append(guess)
        if c.needs_review:
            reviewed += 1
        elif c.intent is e.intent:
            auto_right += 1
        if e.intent is Intent.OPT_OUT and (guess is Intent.OPT_OUT or c.possible_opt_out):
            held_opt_outs += 1
        if c.intent is Intent.OPT_OUT:
            acted += 1
            acted_right += e.intent is Intent.OPT_OUT
        if guess is not e.intent:
            misses.append((e.id, e.intent.value, guess.value, c.confidence))
        if e.intent is Intent.PROMISE_TO_PAY and e.promise is not None and guess is Intent.PROMISE_TO_PAY:
            promise_checks["n"] += 1
            promise_checks["amount"] += c.promise_amount_minor == e.promise_amount_minor
            promise_checks["date"] += (
                c.promise_date.isoformat() if c.promise_date else None
            ) == e.promise.get("date")
            promise_checks["plan"] += c.promise_plan_every == e.promise.get("plan_every")
            if e.promise.get("amount") is not None:
                promise_checks["currency"] += c.promise_currency == e.promise.get("currency")
                promise_checks["with_amount"] += 1
    per: dict[str, dict[str, float]] = {}
    for intent in CLASSES:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g is intent and p is intent)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g is not intent and p is intent)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g is intent and p is not intent)
        prec = tp / (tp + fp) if tp + fp else 1.0
        rec = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[intent.value] = {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
    n = len(examples)
    present = [v for v in per.values() if v["support"]]
    pn = promise_checks["n"] or 1
    opt_out_support = per[Intent.OPT_OUT.value]["support"] or 1
    return Report(
        n=n,
        accuracy=sum(g is p for g, p in zip(gold, pred, strict=True)) / n,
        macro_f1=sum(v["f1"] for v in present) / len(present),
        per_intent=per,
        opt_out_recall=per[Intent.OPT_OUT.value]["recall"],
        opt_out_precision=per[Intent.OPT_OUT.value]["precision"],
        fail_safe_recall=held_opt_outs / opt_out_support,
        acted_opt_out_precision=acted_right / acted if acted else 1.0,
        acted_opt_out_recall=acted_right / opt_out_support,
        review_rate=reviewed / n,
        auto_accuracy=auto_right / max(1, n - reviewed),
        promise={
            "n": promise_checks["n"],
            "amount": promise_checks["amount"] / pn,
            "currency": promise_checks["currency"] / (promise_checks["with_amount"] or 1),
            "date": promise_checks["date"] / pn,
            "plan": promise_checks["plan"] / pn,
        },
        p50_ms=float(np.percentile(durations, 50)),
        p99_ms=float(np.percentile(durations, 99)),
        misses=misses,
    )
