"""Prometheus metrics of the responses service (labels never carry ids, numbers or addresses)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WEBHOOKS = Counter(
    "arrears_responses_webhooks_total", "Provider webhooks by outcome", ["provider", "outcome"]
)
REPLIES = Counter("arrears_responses_replies_total", "Replies classified", ["channel", "intent", "match"])
REVIEWS = Counter(
    "arrears_responses_reply_reviews_total",
    "Replies sent to a person instead of acted on: `unsure` (below the confidence threshold) or "
    "`possible_opt_out` (the fail-safe: that channel is paused for the account until someone decides)",
    ["channel", "reason"],
)
DECISIONS = Counter(
    "arrears_responses_reply_decisions_total", "People's decisions about a reply's intent", ["intent"]
)
LATE_MATCHED = Counter(
    "arrears_responses_replies_late_matched_total",
    "Replies stored unmatched because they arrived before the message they answer had been read here "
    "(its message-sent still behind a backlog), matched and applied once it was",
)
INTENT_MODEL = Gauge(
    "arrears_responses_intent_model_info", "The intent model classifying replies (1 = in use)", ["version"]
)


def count_review(channel: str, needs_review: bool, possible_opt_out: bool) -> None:
    if possible_opt_out:
        REVIEWS.labels(channel, "possible_opt_out").inc()
    elif needs_review:
        REVIEWS.labels(channel, "unsure").inc()
