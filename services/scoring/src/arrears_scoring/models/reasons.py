"""Plain-language reasons: each base feature's contribution to a score, named as a collector would say it.

A reason's `contribution` is in risk-score points (+ = riskier): the feature's share of the log-odds of
P(payment within 14 days) (coefficient × standardised value, relative to an average account), times the
slope of the risk score there (100 · p · (1 − p)). Only base features are reasons: the proposed contact is
the recommendation, not a fact about the customer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..features.pipeline import BASE_FEATURES
from ..history.rows import F


def _n(v: float) -> str:
    return f"{v:.0f}"


# feature -> (what it says, given its value); the sign of the contribution says which way it moved the score
_SAY: dict[str, Callable[[float], str]] = {
    "days_past_due": lambda v: f"{_n(v)} days past due",
    "log_balance": lambda v: f"Balance of about {np.expm1(v):,.0f}",
    "paid_share": lambda v: f"Has paid {v:.0%} of the highest balance",
    "balance_drop_30d": lambda v: f"Balance down {v:.0%} in the last 30 days",
    "payments_90d": lambda v: f"{_n(v)} payment(s) in the last 90 days",
    "days_since_payment": lambda v: "No payment on record" if v >= 365 else f"Last payment {_n(v)} days ago",
    "messages_30d": lambda v: f"{_n(np.expm1(v))} message(s) in the last 30 days",
    "messages_total": lambda v: f"{_n(np.expm1(v))} message(s) so far",
    "replies_total": lambda v: f"{_n(np.expm1(v))} repl(ies) so far",
    "response_rate": lambda v: f"Answers about {v:.0%} of messages",
    "answered_7d": lambda v: (
        f"Answered {_n(v)} message(s) in the last 7 days" if v else "No answer in the last 7 days"
    ),
    "days_since_answer": lambda v: (
        "Has never answered a message" if v >= 365 else f"Last answered a message {_n(v)} days ago"
    ),
    "days_since_reply": lambda v: "Has never replied" if v >= 365 else f"Last reply {_n(v)} days ago",
    "promises_kept": lambda v: f"Kept {_n(v)} promise(s) to pay",
    "promises_broken": lambda v: f"Broke {_n(v)} promise(s) to pay",
    "promise_open": lambda v: "Has a promise to pay pending" if v else "No promise to pay pending",
    "promise_due_soon": lambda v: "Promised to pay within 14 days" if v else "No payment promised soon",
    "days_known": lambda v: f"Known for {_n(v)} days",
    "disputed": lambda v: "Disputes the debt" if v else "No dispute",
    "hardship": lambda v: "Reported hardship" if v else "No hardship reported",
    "callback_30d": lambda v: "Asked for a call" if v else "No call requested",
    "paid_claim_30d": lambda v: "Says they have paid" if v else "No claim of payment",
    "opted_out": lambda v: "Opted out of a channel" if v else "No opt-out",
    "consents": lambda v: f"Reachable on {_n(v)} channel(s)",
    "clicks_30d": lambda v: "Opened a payment link recently" if v else "No payment link opened recently",
    "max_tier": lambda v: ("No notice yet", "Had a reminder", "Had a firm notice", "Had a final notice")[
        int(min(max(v, 0), 3))
    ],
    "manual_contacts": lambda v: f"{_n(v)} contact(s) by people",
}
assert set(_SAY) == set(BASE_FEATURES), set(BASE_FEATURES) ^ set(_SAY)


def label(feature: str, value: float) -> str:
    return _SAY[feature](float(value))


def top_reasons(contributions: F, values: F, p: F, k: int = 3) -> list[list[tuple[str, str, float]]]:
    """Per row: the `k` base features that moved the risk score most, as (feature, label, points)."""
    points = -100.0 * (p * (1 - p))[:, None] * contributions[:, : len(BASE_FEATURES)]
    order = np.argsort(-np.abs(points), axis=1)[:, :k]
    out = []
    for i in range(len(p)):
        row = []
        for j in order[i]:
            pts = float(points[i, j])
            if abs(pts) < 0.5:
                continue
            f = BASE_FEATURES[j]
            row.append((f, label(f, values[i, j]), round(pts, 1)))
        out.append(row)
    return out
