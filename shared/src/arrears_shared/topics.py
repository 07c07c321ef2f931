"""Topic names and which service group consumes which topic.

The table here is the single source for topic creation (`arrears up`, Strimzi manifests),
DLQ naming and the AsyncAPI document.
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

# consumer group (= service name) -> topics it consumes
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "segmenter": (ACCOUNT_CHANGED, REPLY_RECEIVED, MESSAGE_SENT, OVERRIDES),
    # message-sent: a permanent failure on the channel (a bounce, a carrier refusal) marks the address invalid
    "dispatcher-sms": (NOTICE_DUE, REPLY_RECEIVED, MESSAGE_SENT),
    "dispatcher-email": (NOTICE_DUE, REPLY_RECEIVED, MESSAGE_SENT),
    "responses": (MESSAGE_SENT,),
    "escalation": (ACCOUNT_CHANGED, MESSAGE_SENT, REPLY_RECEIVED),
    "ingest": (MESSAGE_SENT, REPLY_RECEIVED),  # contact facts written back to the PME sheet
    "console": EVENT_TOPICS,
}

SERVICES: tuple[str, ...] = (
    "ingest",
    "segmenter",
    "dispatcher-sms",
    "dispatcher-email",
    "responses",
    "escalation",
    "console",
)


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of one consuming group for one source topic, e.g. `notice-due.dispatcher-sms.dlq`."""
    return f"{topic}.{group}.dlq"


def dlq_topics() -> list[str]:
    return [dlq_topic(t, g) for g, topics in SUBSCRIPTIONS.items() for t in topics]


def all_topics() -> list[str]:
    return [*EVENT_TOPICS, *dlq_topics()]
