"""QUO (OpenPhone) webhook bodies and the API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGE_RECEIVED = "message.received"
# Delivery events of QUO's webhooks: both systems send message.delivered; only the new system reports a
# failure (message.failed, with the carrier error when known). There is no "message.undelivered" event.
DELIVERY_TYPES = {
    "message.delivered": "delivered",
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
    errorCode: str | int | None = None
    errorMessage: str | None = None

    @property
    def content(self) -> str:
        return self.text if self.text is not None else (self.body or "")

    @property
    def to_first(self) -> str | None:
        if isinstance(self.to, list):
            return self.to[0] if self.to else None
        return self.to


class QuoWebhookEvent(BaseModel):
    """The envelope of both systems: legacy ``data.object`` (apiVersion v1..v4), new ``data.resource`` with
    ``data.context`` (apiVersion 2026-03-30, https://www.quo.com/docs/2026-03-30/webhooks-overview)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    object: str = "event"
    apiVersion: str | None = None
    type: str = Field(min_length=1, max_length=100)
    createdAt: datetime | None = None
    data: dict[str, Any]

    def message(self) -> QuoMessage:
        """The message of a ``message.*`` event, whichever system sent it (KeyError if there is none)."""
        obj = self.data.get("resource") if "resource" in self.data else self.data["object"]
        return QuoMessage.model_validate(obj)


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
