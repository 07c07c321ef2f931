"""Per-mailbox metrics of the sending pool. The label is our own mailbox address (a handful of values, no
customer data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from .pool import MailboxUsage

SENT_24H = Gauge(
    "arrears_gmail_mailbox_sent_24h",
    "Sends of the mailbox over the rolling 24 hours, all replicas",
    ["mailbox"],
)
QUOTA = Gauge("arrears_gmail_mailbox_quota", "The mailbox's configured daily quota", ["mailbox"])
REMAINING = Gauge(
    "arrears_gmail_mailbox_remaining", "Sends the mailbox has left in its rolling window", ["mailbox"]
)
PAUSED = Gauge(
    "arrears_gmail_mailbox_paused", "1 while the mailbox is paused (quota or credentials)", ["mailbox"]
)
ENABLED = Gauge(
    "arrears_gmail_mailbox_enabled", "1 if the mailbox takes new sends, 0 if draining", ["mailbox"]
)
ASSIGNED = Counter(
    "arrears_gmail_mailbox_accounts_assigned_total", "Accounts given their first sending mailbox", ["mailbox"]
)
REHOMED = Counter(
    "arrears_gmail_mailbox_rehomed_total",
    "Accounts moved to another sending mailbox (reason: disabled, removed, overflow)",
    ["from_mailbox", "to_mailbox", "reason"],
)
MAILBOX_ERRORS = Counter(
    "arrears_gmail_mailbox_provider_errors_total",
    "Gmail refusals handled per mailbox (kind: quota, rate, auth)",
    ["mailbox", "kind"],
)


def observe(usage: Sequence[MailboxUsage]) -> None:
    for u in usage:
        a = u.mailbox.address
        SENT_24H.labels(a).set(u.sent_24h)
        QUOTA.labels(a).set(u.mailbox.daily_quota)
        REMAINING.labels(a).set(u.remaining)
        PAUSED.labels(a).set(1 if u.paused_until is not None else 0)
        ENABLED.labels(a).set(1 if u.mailbox.enabled else 0)
