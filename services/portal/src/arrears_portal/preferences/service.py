"""The debtor's contact preferences: which channels, in which order, and quiet times (not before / not
after a local time, weekdays to avoid). Saving them is the `set_channel_preference` override the console's
collectors already use, with the optional `contact_window` (added within `v1` of `OverrideRequested`: a new
action value would have been a closed-enum change). The segmenter keeps them per account and schedules only
inside both the legal window and the debtor's; the dispatchers' gate refuses a send outside it.

What the page shows back is the debtor's last saved choice (the portal's own `actions` row of kind
`preferences`): a collector's later change in the console is not reflected here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

import yaml
from arrears_shared.compliance import DEFAULT_RULES, RuleSet, window_fits
from arrears_shared.contact_window import MAX_AVOIDED_DAYS, ContactWindow
from arrears_shared.stream.transaction import Transaction
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..actions.service import take_action
from ..verification.sessions import Session

KIND = "preferences"
# the choices the form offers: whole hours a person may pick; the legal window (08:00-21:00 in the US,
# 08:00-19:00 in India) still applies on top: a window that leaves no time inside it is refused on saving
# (`legal_problem`), one that only reaches past it keeps the legal limit
NOT_BEFORE_HOURS = tuple(range(8, 21))  # 08:00 .. 20:00
NOT_AFTER_HOURS = tuple(range(9, 22))  # 09:00 .. 21:00
MIN_HOURS = 1  # the chosen window is at least this long


@dataclass(frozen=True)
class Preferences:
    """What the debtor chose last (empty: nothing yet)."""

    channels: tuple[str, ...] = ()
    window: ContactWindow = field(default_factory=ContactWindow)
    at: datetime | None = None

    def form(self) -> dict[str, Any]:
        """Values for the page's form."""
        w = self.window
        return {
            "channels": list(self.channels),
            "not_before": f"{w.not_before:%H:%M}" if w.not_before else "",
            "not_after": f"{w.not_after:%H:%M}" if w.not_after else "",
            "avoid": list(w.avoid_weekdays),
            "saved": self.at is not None,
        }


class Refused(ValueError):
    """The form asks for something the portal does not allow; the message key says what (i18n)."""


async def current(conn: AsyncConnection, schema: str, account_id: str) -> Preferences:
    row = (
        await conn.execute(
            text(
                f"""SELECT detail, at FROM {schema}.actions WHERE account_id = :a AND kind = :k
                     ORDER BY at DESC LIMIT 1"""
            ),
            {"a": account_id, "k": KIND},
        )
    ).one_or_none()
    if row is None:
        return Preferences()
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail)
    try:
        window = ContactWindow.model_validate(detail.get("contact_window") or {})
    except ValidationError:
        window = ContactWindow()
    return Preferences(tuple(detail.get("channels") or ()), window, row.at)


def _hour(value: str, allowed: tuple[int, ...]) -> time | None:
    if not value:
        return None
    try:
        t = time.fromisoformat(value)
    except ValueError as e:
        raise Refused("prefs_bad_time") from e
    if t.minute or t.second or t.hour not in allowed:
        raise Refused("prefs_bad_time")
    return t


def parse(
    available: tuple[str, ...], ranked: list[str], not_before: str, not_after: str, avoid: list[str]
) -> tuple[list[str], ContactWindow]:
    """The form's fields -> (channels in order, quiet times). Refused names what is wrong: an unknown or
    repeated channel, an hour not offered, a window shorter than an hour or upside down, too many days."""
    channels = [c for c in ranked if c]
    if any(c not in available for c in channels) or len(set(channels)) != len(channels):
        raise Refused("prefs_bad_channels")
    start = _hour(not_before, NOT_BEFORE_HOURS)
    end = _hour(not_after, NOT_AFTER_HOURS)
    if start is not None and end is not None and end.hour - start.hour < MIN_HOURS:
        raise Refused("prefs_bad_window")
    try:
        days = sorted({int(d) for d in avoid})
    except ValueError as e:
        raise Refused("prefs_bad_days") from e
    if any(not 1 <= d <= 7 for d in days) or len(days) > MAX_AVOIDED_DAYS:
        raise Refused("prefs_bad_days")
    return channels, ContactWindow(not_before=start, not_after=end, avoid_weekdays=days)


def rules_from(path: str | None) -> RuleSet:
    """The compliance rules the gate uses (the same YAML as the segmenter's, or the packaged defaults)."""
    if not path:
        return DEFAULT_RULES
    return RuleSet.model_validate(yaml.safe_load(Path(path).read_text()))


def legal_problem(
    window: ContactWindow,
    now: datetime,
    *,
    timezone: str | None,
    country: str | None,
    region: str | None,
    rules: RuleSet,
) -> tuple[str, str, str] | None:
    """None when the chosen window leaves time inside the account's legal contact window (the gate's check,
    `compliance.window_fits`); else (message key, legal start, legal end) for the refusal. The gate would
    otherwise drop the conflicting part of the window when deciding a message."""
    if window_fits(window, now, timezone=timezone, country=country, region=region, rules=rules):
        return None
    j = rules.resolve(country, region)
    hours_only = ContactWindow(not_before=window.not_before, not_after=window.not_after)
    fits_hours = window_fits(hours_only, now, timezone=timezone, country=country, region=region, rules=rules)
    key = "prefs_outside_legal_days" if fits_hours else "prefs_outside_legal"
    return key, f"{j.window_start:%H:%M}", f"{j.window_end:%H:%M}"


async def save(
    tx: Transaction, session: Session, channels: list[str], window: ContactWindow, now: datetime
) -> str:
    """One transaction: the action row, the audit entry (`portal.preferences`) and the override. Channels
    the debtor did not change (the same as their last saved choice: "no preference" when they never chose)
    go out as `channels_unchanged`, so saving only quiet times keeps an order a collector set in the
    console; the action row keeps the debtor's own choice to show it back."""
    before = await current(tx.conn, tx.schema, session.account_id)
    if list(before.channels) == channels:
        return await take_action(
            tx,
            session,
            KIND,
            "set_channel_preference",
            now,
            channels=[],
            channels_unchanged=True,
            contact_window=window,
            detail={"channels": list(before.channels)},
        )
    return await take_action(
        tx, session, KIND, "set_channel_preference", now, channels=channels, contact_window=window
    )
