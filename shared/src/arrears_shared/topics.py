"""Topic names (the event catalogue) and the dead-letter naming rule.

Who reads and writes which topic is declared by each service (`arrears_shared.topology`).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCOUNT_CHANGED = "account-changed"
NOTICE_DUE = "notice-due"
MESSAGE_SENT = "message-sent"
REPLY_RECEIVED = "reply-received"
INGEST_REJECTED = "ingest-rejected"
CASE_ESCALATED = "case-escalated"
OVERRIDES = "overrides"
TEAM_CALENDARS = "team-calendars"
LINK_CLICKED = "link-clicked"
ACCOUNT_SCORED = "account-scored"

EVENT_TOPICS: tuple[str, ...] = (
    ACCOUNT_CHANGED,
    NOTICE_DUE,
    MESSAGE_SENT,
    REPLY_RECEIVED,
    INGEST_REJECTED,
    CASE_ESCALATED,
    OVERRIDES,
    TEAM_CALENDARS,
    LINK_CLICKED,
    ACCOUNT_SCORED,
)


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of one consuming group for one source topic, e.g. `notice-due.dispatcher-sms.dlq`."""
    return f"{topic}.{group}.dlq"


DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSizing:
    """Partitions, replicas and retention of a production topic: the Strimzi `KafkaTopic`s
    (`deploy/gen_topics.py`) and the AsyncAPI channel bindings both read these."""

    partitions: int
    replicas: int
    retention_ms: int


EVENT_TOPIC_SIZING = TopicSizing(partitions=12, replicas=3, retention_ms=7 * DAY_MS)
DLQ_TOPIC_SIZING = TopicSizing(partitions=3, replicas=3, retention_ms=30 * DAY_MS)
