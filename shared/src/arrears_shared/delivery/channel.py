"""What a dispatcher implements: the provider-specific part of a delivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..events import NoticeDue

Rendered = dict[str, Any]
"""JSON-serialisable message as the provider receives it (stored in `deliveries.rendered`, so a resend and
the reconciliation use exactly what was rendered the first time)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    notice_id: str
    account_id: str
    channel: str
    to_address: str
    notice: NoticeDue
    rendered: Rendered | None
    priority: int
    state: str
    attempts: int
    next_attempt_at: datetime
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class Channel(Protocol):
    """Provider-specific part of a dispatcher.

    - `render` turns a notice into the provider message; raising `ValueError` fails the notice permanently.
    - `send` makes the one provider call and raises the classified `arrears_shared.providers.errors`.
    - `reconcile` asks the provider whether an in-doubt delivery was accepted: its message id, or None when
      the provider certainly has no such message (then it is resent).
    """

    channel: str  # "sms" | "email"
    provider: str  # "quo" | "gmail"
    limiter_name: str  # one limiter row per provider account
    rate_per_s: float
    burst: float

    def render(self, notice: NoticeDue) -> Rendered: ...

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult: ...

    async def reconcile(self, row: DeliveryRow) -> str | None: ...
