"""The routes a channel sends by: the primary provider and an optional fallback route (Gmail API -> SMTP
relay), each with this replica's circuit breaker, and the primary route's quota pause."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .breaker import CircuitBreaker
from .channel import Channel, Route
from .settings import DispatchSettings

PRIMARY = "primary"
FALLBACK = "fallback"


class Routes:
    def __init__(self, channel: Channel, settings: DispatchSettings) -> None:
        self.channel = channel
        self.settings = settings
        self.fallback: Route | None = getattr(channel, "fallback", None)
        self.daily_quota: int | None = getattr(channel, "daily_quota", None)
        self.breakers = {
            PRIMARY: self._breaker(channel.provider),
            FALLBACK: self._breaker(self.fallback.provider if self.fallback else "none"),
        }
        # the primary route's quota is used up until then (told by the provider or by the shared window)
        self.quota_exhausted_until: datetime | None = None

    def _breaker(self, name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=self.settings.dispatch_breaker_failures,
            cooldown_s=self.settings.dispatch_breaker_cooldown_s,
            service=self.settings.service_name or "",
        )

    def _primary_usable(self, now: datetime) -> bool:
        if self.quota_exhausted_until is not None and now < self.quota_exhausted_until:
            return False
        return self.breakers[PRIMARY].would_allow()

    def fallback_usable(self) -> bool:
        return self.fallback is not None and self.breakers[FALLBACK].would_allow()

    def choose(self, now: datetime | None = None) -> str | None:
        """The route the next send takes: the primary provider while its circuit is closed (or half-open
        with no trial running) and its daily quota lasts, else the fallback route; None = wait."""
        now = now or datetime.now(UTC)
        if self._primary_usable(now):
            return PRIMARY
        if self.fallback_usable():
            return FALLBACK
        return None

    def down_for(self, now: datetime | None = None) -> float:
        """Seconds every route of the channel has been down (its circuit open since its last success): 0
        while some route may send now (a half-open circuit with no trial running counts as able)."""
        if self.choose(now) is not None:
            return 0.0
        routes = [PRIMARY] + ([FALLBACK] if self.fallback is not None else [])
        return min(self.breakers[r].down_for() for r in routes)

    def params(self, route: str) -> tuple[str, float, float]:
        """The route's limiter: its name, rate and burst."""
        r: Any = self.fallback if route == FALLBACK else self.channel
        return r.limiter_name, r.rate_per_s, r.burst

    def sender(self, route: str) -> Any:
        """What makes the provider call of a send on `route` (the channel or its fallback route)."""
        return self.fallback if route == FALLBACK and self.fallback is not None else self.channel

    def provider(self, route: str | None) -> str:
        """The provider a send on `route` went to (named in its `message-sent`)."""
        if route == FALLBACK and self.fallback is not None:
            return self.fallback.provider
        return self.channel.provider
