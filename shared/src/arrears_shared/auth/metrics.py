"""Prometheus metrics of authentication and authorisation."""

from __future__ import annotations

from prometheus_client import Counter

FAILURES = Counter(
    "arrears_auth_failures_total",
    "Requests refused for want of a valid credential, by reason",
    ["reason"],
)
THROTTLED = Counter(
    "arrears_auth_throttled_total",
    "Requests answered 429 because their address failed authentication too often",
)
FORBIDDEN = Counter(
    "arrears_auth_forbidden_total", "Requests refused (403) for want of a permission", ["permission"]
)
AUTHENTICATED = Counter(
    "arrears_auth_authenticated_total", "Requests authenticated, by credential kind", ["kind"]
)
