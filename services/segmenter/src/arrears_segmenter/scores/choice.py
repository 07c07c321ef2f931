"""How a fresh score changes what the segmenter does (pure functions).

- **Band**: campaigns select on the model's band while the account's score is fresh (made at most
  `max_age_days` days ago), else on the rule score's band (`segments.risk_band`). A risk score a person
  pinned (`risk_override`) always wins over the model.
- **Channel**: the model's `best_channel` is tried first when the policy step lists it and the account can
  be reached there (address, consent, not stopped, not opted out). A person's channel preference wins.
- **Hour**: a planned step is placed at the model's `best_hour` (debtor's local time) on the day it falls
  due or, if that hour has passed, the next day; never outside the compliance window: a best hour outside
  it becomes the nearest allowed hour. A step a person made due now (`send_now`) is never moved. The
  compliance gate still runs when the step fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arrears_shared import compliance
from arrears_shared.compliance import DEFAULT_RULES, RuleSet
from arrears_shared.compliance.gate import candidate_zones

from ..accounts.account import Account
from ..segments import risk_band
from .models import Score


@dataclass(frozen=True)
class ScoreUse:
    """How scores are used: the age after which a score is ignored, and the compliance rules (windows)."""

    max_age_days: int = 3
    rules: RuleSet = DEFAULT_RULES


def fresh_score(score: Score | None, now: datetime, use: ScoreUse) -> Score | None:
    return score if score is not None and score.fresh(now, use.max_age_days) else None


class RiskFacts(Protocol):
    """What the band is made of besides the model: the rule score and a person's pinned score."""

    risk_score: int
    risk_override: int | None


def band_for(acct: RiskFacts, score: Score | None) -> str:
    """The band campaigns select on: the fresh score's (the caller passes None for a stale one), else the
    rule score's; a pinned risk score wins."""
    if score is not None and acct.risk_override is None:
        return score.band
    return risk_band(acct.risk_score)


def order_channels(channels: Sequence[str], acct: Account, score: Score | None) -> list[str]:
    """The step's channels with the model's best channel first, when the step lists it and the account can
    be reached on it; otherwise as the policy orders them."""
    out = list(channels)
    best = score.best_channel if score is not None else None
    if best is None or best not in out or not _reachable(acct, best):
        return out
    out.remove(best)
    return [best, *out]


def _reachable(acct: Account, channel: str) -> bool:
    return bool(
        acct.address(channel)
        and acct.consented(channel)
        and not (acct.opted_out(channel) or acct.channel_stopped(channel) or acct.address_invalid(channel))
    )


def allowed_hour(best_hour: int, start: time, end: time) -> int:
    """`best_hour`, or the nearest whole hour that starts inside the window [start, end) (ties: earlier)."""

    def inside(h: int) -> bool:
        t = time(h)
        return start <= t < end if start <= end else (t >= start or t < end)

    for delta in range(24):
        for h in (best_hour - delta, best_hour + delta):
            if 0 <= h <= 23 and inside(h):
                return h
    return best_hour  # an empty window: the gate defers it anyway


def at_best_hour(
    due: datetime, acct: Account, score: Score | None, use: ScoreUse, now: datetime | None = None
) -> datetime:
    """`due` moved to the first moment at or after it (and after `now`: a step already due waits for the
    next best hour too) whose local hour is the model's best hour, clamped into the contact window.
    Unchanged without a best hour, or when the step would go inside that hour anyway."""
    if score is None or score.best_hour is None:
        return due
    start = due if now is None or due >= now else now
    rules = use.rules
    j = rules.resolve(acct.country, acct.region)
    zones, _ = candidate_zones(acct.timezone, acct.country, acct.region, rules)
    try:
        zone = ZoneInfo(zones[0])
    except (ZoneInfoNotFoundError, ValueError, IndexError):
        return due
    hour = allowed_hour(score.best_hour, j.window_start, j.window_end)
    local = start.astimezone(zone)
    if local.hour == hour:
        return due
    for days in range(8):  # the first day whose best hour is allowed (weekends, holidays)
        at = datetime.combine(local.date() + timedelta(days=days), time(hour), tzinfo=zone)
        if at < start:
            continue
        allowed = compliance.next_allowed(
            at, timezone=acct.timezone, country=acct.country, region=acct.region, rules=rules
        )
        if allowed == at:
            return at.astimezone(due.tzinfo)
    return due
