"""Topic names (the event catalogue) and the dead-letter naming rule.

Who reads and writes which topic is declared by each service (`arrears_shared.topology`).
"""

from __future__ import annotations

ACCOUNT_CHANGED = "account-changed"
NOTICE_DUE = "notice-due"
MESSAGE_SENT = "message-sent"
REPLY_RECEIVED = "reply-received"
INGEST_REJECTED = "ingest-rejected"
CASE_ESCALATED = "case-escalated"
OVERRIDES = "overrides"

EVENT_TOPICS: tuple[str, ...] = (
    ACCOUNT_CHANGED,
    NOTICE_DUE,
    MESSAGE_SENT,
    REPLY_RECEIVED,
    INGEST_REJECTED,
    CASE_ESCALATED,
    OVERRIDES,
)


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of one consuming group for one source topic, e.g. `notice-due.dispatcher-sms.dlq`."""
    return f"{topic}.{group}.dlq"
