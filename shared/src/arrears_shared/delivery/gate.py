"""The last-moment gate applied right before a send (ARCHITECTURE §5): quiet hours and frequency caps defer
(never drop), do-not-contact suppresses. `compliance_gate()` adapts `arrears_shared.compliance.evaluate`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..compliance import DEFAULT_RULES, RuleSet, evaluate
from ..events import NoticeDue


@dataclass(frozen=True, slots=True)
class GateDecision:
    action: Literal["allow", "defer", "suppress"]
    rule: str | None = None
    defer_until: datetime | None = None
    detail: str | None = None


ALLOW = GateDecision("allow")

Gate = Callable[[NoticeDue, datetime, Sequence[datetime]], Awaitable[GateDecision]]
"""(notice, now, instants of this account's recent sends on this channel) -> decision."""


async def allow_all(notice: NoticeDue, now: datetime, recent_sends: Sequence[datetime]) -> GateDecision:
    return ALLOW


def compliance_gate(rules: RuleSet = DEFAULT_RULES) -> Gate:
    async def gate(notice: NoticeDue, now: datetime, recent_sends: Sequence[datetime]) -> GateDecision:
        d = evaluate(
            now,
            channel=notice.channel,
            timezone=notice.timezone,
            country=notice.country,
            region=notice.region,
            recent_sends=recent_sends,
            rules=rules,
            window=notice.contact_window,  # the debtor's own quiet times narrow the legal window
        )
        if d.allowed:
            return GateDecision("allow", rule=d.rule_id, detail=d.reason)
        if d.defer_until is not None:
            return GateDecision("defer", rule=d.rule_id, defer_until=d.defer_until, detail=d.reason)
        return GateDecision("suppress", rule=d.rule_id, detail=d.reason)

    return gate
