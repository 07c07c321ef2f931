"""Inbound adapters: how a channel package hands what its provider reports back (a customer's reply, a message
that failed after the provider accepted it) to the responses service, which never names the channel.

A package declares an adapter under the entry-point group `arrears.inbound`
(``whatsapp = "arrears_x.inbound:ADAPTER"``). An adapter is a callable: given two async callbacks it returns a
FastAPI `APIRouter` serving the provider's webhooks. It reads its own settings (secrets) from the environment;
when they are missing it raises `AdapterUnavailable` and the host skips it with a warning. Its routes declare
their access like every route (`Depends(public("...: HMAC signature verified"))`: the adapter verifies the
provider's signature itself); the host refuses to start with an undeclared route.

The host calls `on_reply` / `on_failure` once per item, in order, and commits each in its own transaction. The
callbacks are idempotent on `provider_message_id`: a provider that delivers the same webhook again (after an
error, or just because) changes nothing. An exception in a callback must reach the provider as an error
(HTTP 5xx), so it delivers again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Protocol

from fastapi import APIRouter

ENTRY_POINT_GROUP = "arrears.inbound"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundReply:
    """A message a customer sent us on `channel` (a name of the channel registry)."""

    channel: str
    provider: str  # with provider_message_id, the reply's identity: reply_id = "<provider>:<id>"
    provider_message_id: str
    from_address: str  # as the provider gives it; the host normalises it by the channel's address kind
    body: str
    received_at: datetime  # timezone-aware: when the customer sent it
    to_address: str | None = None  # our address it was sent to


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A message we sent that the provider accepted and then reports as not delivered."""

    channel: str
    provider: str
    provider_message_id: str  # of the message we sent (as in its `message-sent`)
    failed_at: datetime  # timezone-aware
    reason: str  # human-readable, the provider's code first ("whatsapp 131026: Message undeliverable")
    permanent: bool  # the address itself cannot receive this channel (not a passing problem)
    notice_id: str | None = None  # when the provider echoes it back (not needed when the id is known)
    error_code: str | None = None


OnReply = Callable[[InboundReply], Awaitable[None]]
OnFailure = Callable[[DeliveryFailure], Awaitable[None]]


class InboundAdapter(Protocol):
    """What `arrears.inbound` entry points name."""

    def __call__(self, on_reply: OnReply, on_failure: OnFailure) -> APIRouter: ...


class AdapterUnavailable(RuntimeError):
    """The adapter is installed but not configured in this process (a secret is missing): skipped."""


def adapters() -> dict[str, InboundAdapter]:
    """Every installed adapter by entry-point name (loaded, not yet called)."""
    return {ep.name: ep.load() for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)}


def mount(on_reply: OnReply, on_failure: OnFailure) -> dict[str, APIRouter]:
    """The router of every installed, configured adapter; an unconfigured one is logged and left out."""
    out: dict[str, APIRouter] = {}
    for name, adapter in adapters().items():
        try:
            out[name] = adapter(on_reply, on_failure)
        except AdapterUnavailable as e:
            log.warning("inbound adapter not mounted", extra={"adapter": name, "reason": str(e)[:200]})
    return out
