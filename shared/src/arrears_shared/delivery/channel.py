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
    route: str | None = None
    # The account was erased (its data key destroyed): the row's personal fields read `[erased]`; never sent.
    erased: bool = False
    # A sealed personal field did not open (no key for it, or sealed for another one): never sent.
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """What this dispatcher already sent to the account on this channel, oldest first (email threading)."""

    notice_ids: tuple[str, ...]
    thread_id: str | None


@dataclass(frozen=True, slots=True)
class Undelivered:
    """What `Channel.reconcile` returns for a message the provider accepted and then could not deliver
    (QUO status ``undelivered``): the delivery is settled failed with this reason and never resent."""

    provider_message_id: str
    reason: str


class CannotReconcile(Exception):
    """The route an in-doubt send took cannot tell whether it accepted the message (e.g. an SMTP relay).
    The engine then fails the delivery and dead-letters it instead of risking a second send."""


class Route(Protocol):
    """A second way to send the same channel (Gmail API -> SMTP relay), used while the primary route's
    circuit is open or its daily quota is used up. Has its own limiter and circuit breaker."""

    provider: str
    limiter_name: str
    rate_per_s: float
    burst: float

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult: ...


class Channel(Protocol):
    """Provider-specific part of a dispatcher.

    - `render` turns a notice into the provider message; raising `ValueError` fails the notice permanently.
    - `send` makes the one provider call and raises the classified `arrears_shared.providers.errors`.
    - `reconcile` asks the provider whether an in-doubt delivery was accepted: its message id, or None when
      the provider certainly has no such message (then it is resent); `Undelivered` when it was accepted but
      not delivered (settled failed, not resent); `CannotReconcile` when it cannot tell.
    - `start` (optional, async): called once when the engine starts (e.g. to resolve provider ids).

    Optional attributes (read with `getattr`): `daily_quota: int | None` (sends per rolling 24 hours of the primary
    route), `fallback: Route | None`, `threaded: bool` (render receives a `ThreadRef`).
    """

    channel: str  # "sms" | "email"
    provider: str  # "quo" | "gmail"
    limiter_name: str  # one limiter row per provider account
    rate_per_s: float
    burst: float

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered: ...

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult: ...

    async def reconcile(self, row: DeliveryRow) -> str | Undelivered | None: ...
