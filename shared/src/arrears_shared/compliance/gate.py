"""The compliance gate: pure functions deciding whether a message may go out now, later, or never.

`evaluate()` is called when a notice becomes due (segmenter) and again right before the provider call
(dispatchers). A quiet-hours or frequency-cap hit defers to `defer_until` (always an allowed moment, never a
drop); opt-outs and do-not-contact suppress. Every decision names the rule that produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict

from .. import channels
from ..contact_window import ContactWindow
from .rules import DEFAULT_RULES, FrequencyCap, ResolvedJurisdiction, RuleSet

log = logging.getLogger(__name__)
DEBTOR_WINDOW_DROPPED = Counter(
    "arrears_debtor_window_dropped_total",
    "Decisions where a debtor's contact window left no time inside the legal one, by the part dropped "
    "(hours, days or all)",
    ["part"],
)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    rule_id: str
    defer_until: datetime | None = None
    reason: str
    zones: tuple[str, ...] = ()
    zone_assumed: bool = False

    @property
    def suppressed(self) -> bool:
        return not self.allowed and self.defer_until is None


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def candidate_zones(
    timezone: str | None, country: str | None, region: str | None, rules: RuleSet = DEFAULT_RULES
) -> tuple[tuple[str, ...], bool]:
    """Zones whose local time must all be inside the window, and whether they were assumed (zone unknown)."""
    if timezone and _zone(timezone) is not None:
        return (timezone,), False
    j = rules.resolve(country, region)
    if region and region.upper() in j.region_zones:
        return tuple(j.region_zones[region.upper()]), True
    return tuple(j.candidate_zones), True


DayRule = Callable[[date], str | None]
"""local date -> why no contact is allowed that day ('weekend' / 'holiday'), or None."""


@lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str | None) -> Any:
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        raise ValueError(f"unknown holiday calendar {country!r}")
    if subdivision not in supported[country]:
        subdivision = None  # the region is not a subdivision of this calendar: the national one applies
    return holidays_lib.country_holidays(country, subdiv=subdivision)


def day_rule(j: ResolvedJurisdiction) -> DayRule | None:
    """The jurisdiction's weekday / holiday blocks as one predicate, or None when every day is open."""
    if not j.has_day_rules:
        return None
    weekdays = frozenset(j.no_contact_weekdays)
    extra = frozenset(j.extra_no_contact_dates)
    cal = _calendar(j.holiday_calendar, j.holiday_subdivision) if j.holiday_calendar else None

    def blocked(d: date) -> str | None:
        if d.isoweekday() in weekdays:
            return "weekend"
        if d in extra or (cal is not None and d in cal):
            return "holiday"
        return None

    return blocked


def _blocked_day(instant: datetime, zones: Sequence[str], days: DayRule | None) -> str | None:
    if days is None:
        return None
    for name in zones:
        z = _zone(name)
        why = days(instant.astimezone(z if z is not None else UTC).date())
        if why is not None:
            return why
    return None


def _debtor_blocks(instant: datetime, zones: Sequence[str], debtor: ContactWindow | None) -> str | None:
    """'day' or 'hours' when the debtor's own window excludes `instant` in any of the zones, else None."""
    if debtor is None:
        return None
    for name in zones:
        z = _zone(name)
        local = instant.astimezone(z if z is not None else UTC)
        if not debtor.allows_weekday(local.isoweekday()):
            return "day"
        if not debtor.allows_time(local.time()):
            return "hours"
    return None


def _in_window(
    instant: datetime,
    zones: Sequence[str],
    start: dtime,
    end: dtime,
    days: DayRule | None = None,
    debtor: ContactWindow | None = None,
) -> bool:
    if _blocked_day(instant, zones, days) is not None:
        return False
    if debtor is not None and _debtor_blocks(instant, zones, debtor) is not None:
        return False
    for name in zones:
        z = _zone(name)
        local = instant.astimezone(z if z is not None else UTC).time()
        if start <= end:
            if not (start <= local < end):
                return False
        elif not (local >= start or local < end):  # window across midnight
            return False
    return True


def _window_starts(after: datetime, zones: Sequence[str], start: dtime, days: int) -> list[datetime]:
    """UTC instants of every zone's local window start on the next `days` local dates (DST-safe: a start
    inside a DST gap maps to the first instant after the gap)."""
    out: list[datetime] = []
    for name in zones:
        z = _zone(name) or ZoneInfo("UTC")
        d0 = after.astimezone(z).date()
        for i in range(-1, days + 1):
            local = datetime.combine(d0 + timedelta(days=i), start, tzinfo=z)
            out.append(local.astimezone(UTC))
    return out


def _day_starts(after: datetime, zones: Sequence[str], days: int) -> list[datetime]:
    """UTC instants of every zone's local midnight on the next `days` local dates (a blocked day ends there)."""
    return _window_starts(after, zones, dtime(0, 0), days)


def _next_in_window(
    now: datetime,
    zones: Sequence[str],
    start: dtime,
    end: dtime,
    days: DayRule | None = None,
    debtor: ContactWindow | None = None,
) -> datetime:
    """Earliest instant >= now inside every zone's window (and the debtor's own window, if any) on an open
    day. The intersection of the windows starts at one of the zones' window starts (the legal one's or the
    debtor's `not_before`) or local midnights (a blocked day ending), so those (and `now`) are the only
    candidates; a bounded scan covers exotic DST transitions. ValueError when there is none."""
    if _in_window(now, zones, start, end, days, debtor):
        return now
    day_blocks = days is not None or (debtor is not None and bool(debtor.avoid_weekdays))
    horizon = 45 if day_blocks else 8
    cands = _window_starts(now, zones, start, horizon)
    if debtor is not None and debtor.not_before is not None:
        cands += _window_starts(now, zones, debtor.not_before, horizon)
    if day_blocks:
        cands += _day_starts(now, zones, horizon)
    for c in sorted(t for t in cands if t > now):
        if _in_window(c, zones, start, end, days, debtor):
            return c
    t = now.replace(second=0, microsecond=0)
    for _ in range(horizon * 24 * 4):
        t += timedelta(minutes=15)
        if _in_window(t, zones, start, end, days, debtor):
            return t
    raise ValueError(f"no allowed moment within {horizon} days for zones {list(zones)}")


def _parts(debtor: ContactWindow) -> list[tuple[ContactWindow, str]]:
    """The debtor's window, then what is left of it when one part must go: the avoided days without the
    hours, then the hours without the days (label: what was dropped)."""
    out = [(debtor, "")]
    hours = debtor.not_before is not None or debtor.not_after is not None
    if hours and debtor.avoid_weekdays:
        out.append((ContactWindow(avoid_weekdays=debtor.avoid_weekdays), "hours"))
        out.append((ContactWindow(not_before=debtor.not_before, not_after=debtor.not_after), "days"))
    return out


def _next_for(
    now: datetime,
    zones: Sequence[str],
    j: ResolvedJurisdiction,
    days: DayRule | None,
    debtor: ContactWindow | None,
) -> tuple[datetime, ContactWindow | None]:
    """The next allowed moment inside the legal window and the debtor's, and the part of the debtor's window
    that was honoured (None: none of it). A debtor's window that leaves no time at all inside the legal one
    (e.g. "not before 20:00" where the law stops at 19:00) cannot be honoured whole: only the conflicting
    part is dropped (the hours, keeping the avoided days; else the days, keeping the hours; else all of it)
    rather than blocking contact for ever. Each drop is logged and counted
    (`arrears_debtor_window_dropped_total{part}`); the portal refuses such a window when it is saved."""
    if debtor is not None:
        for part, dropped in _parts(debtor):
            try:
                when = _next_in_window(now, zones, j.window_start, j.window_end, days, part)
            except ValueError:
                continue
            if dropped:
                _dropped(debtor, dropped, j)
            return when, part
        _dropped(debtor, "all", j)
    return _next_in_window(now, zones, j.window_start, j.window_end, days), None


def _dropped(debtor: ContactWindow, part: str, j: ResolvedJurisdiction) -> None:
    DEBTOR_WINDOW_DROPPED.labels(part).inc()
    log.info(
        "debtor window cannot be honoured inside the legal window: part dropped",
        extra={"dropped": part, "window": debtor.describe(), "jurisdiction": j.id},
    )


def _usable(debtor: ContactWindow | None) -> ContactWindow | None:
    return None if debtor is None or debtor.empty else debtor


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def next_allowed(
    now_utc: datetime,
    *,
    timezone: str | None,
    country: str | None = None,
    region: str | None = None,
    rules: RuleSet = DEFAULT_RULES,
    window: ContactWindow | None = None,
) -> datetime:
    """The first moment >= now inside the contact window of every candidate zone (and inside the debtor's
    own `window`, when it leaves any time inside the legal one)."""
    now = _aware(now_utc)
    j = rules.resolve(country, region)
    zones, _ = candidate_zones(timezone, country, region, rules)
    return _next_for(now, zones, j, day_rule(j), _usable(window))[0]


def window_fits(
    window: ContactWindow,
    now_utc: datetime,
    *,
    timezone: str | None,
    country: str | None = None,
    region: str | None = None,
    rules: RuleSet = DEFAULT_RULES,
) -> bool:
    """Whether the debtor's `window` leaves any moment inside the legal one (its hours, days and holidays,
    in every candidate zone) within the gate's horizon: what the portal checks before saving it. A window
    that does not fit would be honoured only in part by `evaluate` (the conflicting part is dropped)."""
    if window.empty:
        return True
    now = _aware(now_utc)
    j = rules.resolve(country, region)
    zones, _ = candidate_zones(timezone, country, region, rules)
    try:
        _next_in_window(now, zones, j.window_start, j.window_end, day_rule(j), window)
    except ValueError:
        return False
    return True


def channel_cap(channel: str) -> FrequencyCap | None:
    """The channel's own weekly cap (its `ChannelSpec.max_per_week`) where no jurisdiction sets one."""
    spec = channels.registered().get(channel)
    if spec is None or spec.max_per_week is None:
        return None
    return FrequencyCap(max_messages=spec.max_per_week, window_days=7)


def _frequency_release(
    now: datetime, j: ResolvedJurisdiction, channel: str, count: int, recent: Sequence[datetime]
) -> tuple[datetime | None, str]:
    cap = j.frequency_caps.get(channel) or channel_cap(channel)
    if cap is None:
        return None, ""
    window = timedelta(days=cap.window_days)
    inside = sorted(_aware(t) for t in recent if now - window < _aware(t) <= now)
    n = max(count, len(inside))
    if n < cap.max_messages:
        return None, ""
    if len(inside) >= n and n > 0:
        # the (n - max + 1)-th oldest send must leave the window before one more fits
        release = inside[n - cap.max_messages] + window
    else:
        release = now + window
    release = max(release, now + timedelta(seconds=1))
    return release, f"{n} {channel} messages in {cap.window_days} days (cap {cap.max_messages})"


def evaluate(
    now_utc: datetime,
    *,
    channel: str,
    timezone: str | None,
    country: str | None = None,
    region: str | None = None,
    opted_out_channels: Collection[str] = (),
    do_not_contact: bool = False,
    sent_in_window: int = 0,
    recent_sends: Sequence[datetime] = (),
    rules: RuleSet = DEFAULT_RULES,
    window: ContactWindow | None = None,
) -> Decision:
    """Decide one message on one channel at `now_utc`.

    `sent_in_window` is the number of messages already sent on this channel within the cap window; pass
    `recent_sends` (their instants) instead or as well to get an exact release time for the cap.
    `window` is the debtor's own quiet times (`ContactWindow`): it only narrows the legal window — a moment
    is allowed when it is inside both; a deferral goes to the first moment inside both (rule
    `debtor_window.hours` / `debtor_window.day` when only the debtor's wish stops it). A window that leaves
    no time inside the legal one is ignored (the reason says so).
    """
    now = _aware(now_utc)
    ch = str(channel)
    j = rules.resolve(country, region)
    zones, assumed = candidate_zones(timezone, country, region, rules)
    common = {"zones": zones, "zone_assumed": assumed}
    debtor = _usable(window)
    if do_not_contact:
        return Decision(allowed=False, rule_id="do_not_contact", reason="account is do-not-contact", **common)
    if ch in {str(c) for c in opted_out_channels}:
        return Decision(allowed=False, rule_id=f"opt_out.{ch}", reason=f"debtor opted out of {ch}", **common)
    days = day_rule(j)
    release, why = _frequency_release(now, j, ch, sent_in_window, recent_sends)
    if release is not None:
        return Decision(
            allowed=False,
            rule_id=f"frequency_cap.{j.id}.{ch}",
            defer_until=_next_for(release, zones, j, days, debtor)[0],
            reason=why,
            **common,
        )
    blocked = _blocked_day(now, zones, days)
    if blocked is not None:
        return Decision(
            allowed=False,
            rule_id=f"{blocked}.{j.id}",
            defer_until=_next_for(now, zones, j, days, debtor)[0],
            reason=f"no contact on this local date ({blocked}) in {', '.join(zones)}",
            **common,
        )
    if not _in_window(now, zones, j.window_start, j.window_end):
        when, kept = _next_for(now, zones, j, days, debtor)
        return Decision(
            allowed=False,
            rule_id=f"quiet_hours.{j.id}",
            defer_until=when,
            reason=(
                f"outside {j.window_start:%H:%M}-{j.window_end:%H:%M} local in {', '.join(zones)}"
                f" ({j.window_source})"
                + (f"; debtor's window: {kept.describe()}" if kept is not None else "")
            ),
            **common,
        )
    inside = f"inside {j.window_start:%H:%M}-{j.window_end:%H:%M} local in {', '.join(zones)}"
    which = _debtor_blocks(now, zones, debtor)
    if debtor is not None and which is not None:
        when, kept = _next_for(now, zones, j, days, debtor)
        which = _debtor_blocks(now, zones, kept)
        if kept is not None and which is not None:
            part = (
                ""
                if kept is debtor
                else f" (only {kept.describe()}: the rest leaves no time inside the legal one)"
            )
            return Decision(
                allowed=False,
                rule_id=f"debtor_window.{which}",
                defer_until=when,
                reason=f"outside the debtor's chosen window ({debtor.describe()}){part} local in {', '.join(zones)}",
                **common,
            )
        if kept is None:
            inside += f"; the debtor's window ({debtor.describe()}) leaves no time inside it: ignored"
        else:
            inside += f"; the debtor's window ({debtor.describe()}) leaves no time inside it: only {kept.describe()} kept"
    elif debtor is not None:
        inside += f" and the debtor's window ({debtor.describe()})"
    return Decision(allowed=True, rule_id=f"allowed.{j.id}", reason=inside, **common)
