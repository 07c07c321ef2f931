"""Review fixes, the pure parts: the one shared `local_day` (the debtor's day, not the server's); the gate
drops only the conflicting part of a debtor's window that leaves no time inside the legal one (and counts
it); `window_fits` is the check the portal makes before saving one; the segmenter keeps a collector's
channel order when the portal says `channels_unchanged`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from arrears_segmenter.accounts.account import Account
from arrears_segmenter.overrides.actions import apply
from arrears_shared import compliance
from arrears_shared.clock import local_day
from arrears_shared.compliance.gate import DEBTOR_WINDOW_DROPPED
from arrears_shared.contact_window import ContactWindow
from arrears_shared.events import OverrideRequested

IST = ZoneInfo("Asia/Kolkata")


def test_local_day_is_the_debtors_day_and_utc_when_the_zone_is_unknown() -> None:
    at = datetime(
        2026, 12, 5, 10, 30, tzinfo=UTC
    )  # 00:30 on the 6th in Kiritimati, 23:30 on the 4th in Samoa
    assert local_day("Pacific/Kiritimati", at) == date(2026, 12, 6)
    assert local_day("Pacific/Pago_Pago", at) == date(2026, 12, 4)
    for unknown in (None, "", "Mars/Olympus", "America", "../etc"):
        assert local_day(unknown, at) == date(2026, 12, 5), unknown
    assert local_day("Asia/Tokyo", datetime(2026, 12, 5, 16)) == date(2026, 12, 6)  # naive: read as UTC


def decide(at: datetime, window: ContactWindow) -> compliance.Decision:
    return compliance.evaluate(at, channel="sms", timezone="Asia/Kolkata", country="IN", window=window)


def test_a_window_whose_hours_the_law_leaves_no_time_for_keeps_its_avoided_days() -> None:
    # India's legal window ends at 19:00: "not before 20:00" cannot be honoured, the avoided weekend can
    window = ContactWindow(not_before=time(20), avoid_weekdays=[6, 7])
    before = DEBTOR_WINDOW_DROPPED.labels("hours")._value.get()
    saturday = decide(datetime(2026, 12, 5, 12, tzinfo=IST), window)
    assert not saturday.allowed and saturday.rule_id == "debtor_window.day", saturday
    assert saturday.defer_until == datetime(2026, 12, 7, 8, tzinfo=IST)  # Monday, the law's 08:00
    assert "only not on Sat, Sun" in saturday.reason
    monday = decide(datetime(2026, 12, 7, 12, tzinfo=IST), window)
    assert monday.allowed and "only not on Sat, Sun kept" in monday.reason
    assert DEBTOR_WINDOW_DROPPED.labels("hours")._value.get() >= before + 2
    # next_allowed (the planner) agrees: Saturday noon -> Monday 08:00
    assert compliance.next_allowed(
        datetime(2026, 12, 5, 12, tzinfo=IST), timezone="Asia/Kolkata", country="IN", window=window
    ) == datetime(2026, 12, 7, 8, tzinfo=IST)


def test_window_fits_is_the_gates_own_check() -> None:
    at = datetime(2026, 12, 7, 12, tzinfo=UTC)
    kw = {"timezone": "Asia/Kolkata", "country": "IN"}
    assert compliance.window_fits(ContactWindow(not_before=time(10), not_after=time(18)), at, **kw)  # type: ignore[arg-type]
    assert not compliance.window_fits(ContactWindow(not_before=time(19)), at, **kw)  # type: ignore[arg-type]
    assert compliance.window_fits(
        ContactWindow(not_before=time(19)), at, timezone="America/New_York", country="US"
    )
    assert compliance.window_fits(ContactWindow(), at, **kw)  # type: ignore[arg-type]


def preference(**kw: object) -> OverrideRequested:
    base = dict(
        account_id="A-1",
        override_id="o-1",
        action="set_channel_preference",
        actor="portal:debtor:abc",
        role="system",
        requested_at=datetime(2026, 12, 7, 12, tzinfo=UTC),
    )
    return OverrideRequested.model_validate(base | kw)


def test_the_segmenter_keeps_a_collectors_order_when_the_portal_sends_channels_unchanged() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    acct = replace(Account.new("A-1", now), known=True, timezone="America/New_York", country="US")
    apply(acct, preference(channels=["email", "sms"], actor="collector-1"), None, now, band="low")  # type: ignore[arg-type]
    assert acct.channel_preference == "email,sms"
    quiet = ContactWindow(not_before=time(10), not_after=time(18))
    applied = apply(
        acct,
        preference(override_id="o-2", channels_unchanged=True, contact_window=quiet.model_dump(mode="json")),
        None,  # type: ignore[arg-type]
        now,
        band="low",
    )
    assert acct.channel_preference == "email,sms", applied  # the collector's order stays
    assert "channel order unchanged" in applied.summary and "not before 10:00" in applied.summary
    # without the flag an empty list still clears (what a collector's "clear" means)
    apply(acct, preference(override_id="o-3", channels=[]), None, now, band="low")  # type: ignore[arg-type]
    assert acct.channel_preference is None
    # an older producer's event (no such field) reads as False
    assert OverrideRequested.model_validate(preference().model_dump(mode="json")).channels_unchanged is False
