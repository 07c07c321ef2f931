"""Prometheus counters of failed-payment retries and customer notices (no account ids in labels)."""

from __future__ import annotations

from prometheus_client import Counter

PAYMENT_RETRIES = Counter(
    "arrears_segmenter_payment_retries_total",
    "Failed-payment retry state changes: at_risk, retry_sent, exhausted, cleared",
    ["status"],
)
CUSTOMER_NOTICES = Counter(
    "arrears_segmenter_customer_notices_total",
    "Payment retry notices and confirmations planned, by purpose and outcome (emitted, deferred, suppressed)",
    ["purpose", "outcome"],
)
