"""Prometheus metrics of the responses service (labels never carry ids, numbers or addresses)."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOKS = Counter(
    "arrears_responses_webhooks_total", "Provider webhooks by outcome", ["provider", "outcome"]
)
REPLIES = Counter("arrears_responses_replies_total", "Replies classified", ["channel", "intent", "match"])
