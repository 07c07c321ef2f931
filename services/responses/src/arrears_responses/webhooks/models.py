"""QUO (OpenPhone) webhook bodies and the API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGE_RECEIVED = "message.received"
DELIVERY_TYPES = {
    "message.delivered": "delivered",
    "message.undelivered": "undelivered",
    "message.failed": "failed",
}


class QuoMessage(BaseModel):
    """`data.object` of a `message.*` webhook (only the fields we use; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from", max_length=64)
    to: list[str] | str | None = None
    text: str | None = None
    body: str | None = None
    direction: str | None = None
    status: str | None = None
    createdAt: datetime | None = None

    @property
    def content(self) -> str:
        return self.text if self.text is not None else (self.body or "")

    @property
    def to_first(self) -> str | None:
        if isinstance(self.to, list):
            return self.to[0] if self.to else None
        return self.to


class QuoWebhookEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    object: str = "event"
    type: str = Field(min_length=1, max_length=100)
    createdAt: datetime | None = None
    data: dict[str, Any]


class WebhookAck(BaseModel):
    status: Literal["processed", "duplicate", "ignored", "unmatched", "delivery_status"]
    reply_id: str | None = None
    intent: str | None = None


class UnmatchedReply(BaseModel):
    reply_id: str
    channel: str
    from_address: str
    to_address: str | None
    text: str
    intent: str
    confidence: float
    received_at: datetime


class UnmatchedReplies(BaseModel):
    items: list[UnmatchedReply]
    count: int
