"""The debtor's quiet times (`ContactWindow`) in the compliance gate, pure: a moment is allowed only inside
both the legal window and the debtor's; a deferral goes to the first moment inside both; a debtor can only
narrow the legal window, never widen it; the dispatchers' gate refuses a notice outside the window it
carries; the segmenter's override stores the window and the planner arms the step inside it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from arrears_segmenter.accounts.account import Account
from arrears_segmenter.overrides.actions import apply
from arrears_segmenter.preferences.window import debtor_window, earliest
from arrears_shared import compliance
from arrears_shared.contact_window import ContactWindow
from arrears_shared.delivery.gate import compliance_gate
from arrears_shared.delivery.render import sample_notice
from arrears_shared.events import NoticeDue, OverrideRequested, Tier
from pydantic import ValidationError

NY = ZoneInfo("America/New_York")
WINDOW = ContactWindow(not_before=time(10), not_after=time(18), avoid_weekdays=[6, 7])


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY).astimezone(UTC)  # type: ignore[misc]


def decide(at: datetime, window: ContactWindow | None, **kw: object) -> compliance.Decision:
    args: dict[str, object] = {"channel": "sms", "timezone": "America/New_York", "country": "US"}
    return compliance.evaluate(at, **(args | kw), window=window)  # type: ignore[arg-type]


def test_inside_both_windows_is_allowed_and_says_so() -> None:
    d = decide(ny(2026, 12, 7, 12, 0), WINDOW)  # a Monday, 12:00 local
    assert d.allowed and "debtor's window (not before 10:00, not after 18:00, not on Sat, Sun)" in d.reason


@pytest.mark.parametrize(
    ("at", "rule", "until"),
    [
        (ny(2026, 12, 7, 9, 0), "debtor_window.hours", ny(2026, 12, 7, 10, 0)),  # legal, too early for them
        (ny(2026, 12, 7, 18, 0), "debtor_window.hours", ny(2026, 12, 8, 10, 0)),  # legal till 21:00
        (ny(2026, 12, 5, 12, 0), "debtor_window.day", ny(2026, 12, 7, 10, 0)),  # Saturday -> Monday 10:00
        (ny(2026, 12, 7, 7, 0), "quiet_hours.US", ny(2026, 12, 7, 10, 0)),  # the law's, deferred into both
        (ny(2026, 12, 4, 22, 0), "quiet_hours.US", ny(2026, 12, 7, 10, 0)),  # Friday night -> Monday
    ],
)
def test_outside_the_debtors_window_defers_to_the_first_moment_inside_both(
    at: datetime, rule: str, until: datetime
) -> None:
    d = decide(at, WINDOW)
    assert not d.allowed and d.rule_id == rule and d.defer_until == until, d
    assert decide(until, WINDOW).allowed


def test_a_debtor_cannot_widen_the_legal_window() -> None:
    wide = ContactWindow(not_before=time(6), not_after=time(23))
    early = decide(ny(2026, 12, 7, 7, 0), wide)  # inside the debtor's, before the law's 08:00
    assert not early.allowed and early.rule_id == "quiet_hours.US" and early.defer_until == ny(2026, 12, 7, 8)
    late = decide(ny(2026, 12, 7, 21, 30), wide)  # the law stops at 21:00
    assert not late.allowed and late.defer_until == ny(2026, 12, 8, 8)
    # the same for India's 08:00-19:00
    ist = ZoneInfo("Asia/Kolkata")
    at = datetime(2026, 12, 7, 20, tzinfo=ist)
    d = decide(at, wide, timezone="Asia/Kolkata", country="IN")
    assert not d.allowed and d.defer_until == datetime(2026, 12, 8, 8, tzinfo=ist)
    # and next_allowed, which the planner uses, agrees
    assert compliance.next_allowed(
        ny(2026, 12, 7, 7, 0), timezone="America/New_York", country="US", window=wide
    ) == ny(2026, 12, 7, 8)


def test_a_window_the_law_leaves_no_time_for_is_ignored_not_a_stop() -> None:
    never = ContactWindow(not_before=time(20))  # India's window ends at 19:00
    d = decide(
        datetime(2026, 12, 7, 12, tzinfo=ZoneInfo("Asia/Kolkata")),
        never,
        timezone="Asia/Kolkata",
        country="IN",
    )
    assert d.allowed and "leaves no time inside it: ignored" in d.reason


def test_an_unknown_zone_must_satisfy_the_window_in_every_candidate_zone() -> None:
    # zone unknown, state CA-less US: every continental zone must be inside 10:00-18:00 local
    at = ny(2026, 12, 7, 12, 0)  # 09:00 in Los Angeles
    d = decide(at, WINDOW, timezone=None, region=None)
    assert not d.allowed and d.rule_id == "debtor_window.hours"
    assert d.defer_until == datetime(2026, 12, 7, 10, tzinfo=ZoneInfo("America/Los_Angeles"))


def test_no_window_or_an_empty_one_changes_nothing() -> None:
    at = ny(2026, 12, 7, 8, 30)
    assert decide(at, None) == decide(at, ContactWindow())
    assert decide(at, None).allowed


@pytest.mark.parametrize(
    "bad",
    [
        {"not_before": "18:00", "not_after": "10:00"},
        {"not_before": "10:00", "not_after": "10:00"},
        {"avoid_weekdays": [0]},
        {"avoid_weekdays": [8]},
        {"avoid_weekdays": [1, 2, 3, 4, 5, 6]},  # at least two days stay open
    ],
)
def test_a_window_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ContactWindow.model_validate(bad)


def notice(window: ContactWindow | None) -> NoticeDue:
    n = sample_notice(Tier.REMINDER)
    return n.model_copy(
        update={"timezone": "America/New_York", "country": "US", "region": "NY", "contact_window": window}
    )


async def test_the_dispatchers_gate_refuses_a_send_outside_the_debtors_window() -> None:
    gate = compliance_gate()
    at = ny(2026, 12, 7, 19, 0)  # legal (before 21:00), after the debtor's 18:00
    refused = await gate(notice(WINDOW), at, [])
    assert refused.action == "defer" and refused.rule == "debtor_window.hours"
    assert refused.defer_until == ny(2026, 12, 8, 10, 0)
    assert (await gate(notice(None), at, [])).action == "allow"  # a notice without a window: the law only
    assert (await gate(notice(WINDOW), ny(2026, 12, 8, 10, 0), [])).action == "allow"


def test_the_window_travels_on_notice_due_and_old_notices_have_none() -> None:
    n = notice(WINDOW)
    again = NoticeDue.model_validate_json(n.model_dump_json())
    assert again.contact_window == WINDOW
    raw = n.model_dump(mode="json")
    raw.pop("contact_window")
    assert NoticeDue.model_validate(raw).contact_window is None  # from a producer before the field


# -- the segmenter: the override stores it, the planner arms the step inside it --------------------------


NOW = ny(2026, 12, 7, 7, 0)  # Monday 07:00 local


def account() -> Account:
    return replace(
        Account.new("A-1", NOW),
        known=True,
        timezone="America/New_York",
        country="US",
        region="NY",
        due_date=date(2026, 11, 1),
    )


def preference(**kw: object) -> OverrideRequested:
    base = dict(
        account_id="A-1",
        override_id="o-1",
        action="set_channel_preference",
        channels=["email", "sms"],
        actor="portal:debtor:abc",
        role="system",
        requested_at=NOW,
    )
    return OverrideRequested.model_validate(base | kw)


def test_the_override_stores_the_window_and_without_it_keeps_the_stored_one() -> None:
    acct = account()
    applied = apply(acct, preference(contact_window=WINDOW.model_dump(mode="json")), None, NOW, band="low")  # type: ignore[arg-type]
    assert applied.outcome == "updated" and "quiet times: not before 10:00" in applied.summary
    assert acct.preferred_channels() == ["email", "sms"] and debtor_window(acct) == WINDOW
    apply(acct, preference(channels=["sms"]), None, NOW, band="low")  # type: ignore[arg-type]  # a collector's, no window
    assert acct.preferred_channels() == ["sms"] and debtor_window(acct) == WINDOW
    cleared = apply(acct, preference(contact_window={}), None, NOW, band="low")  # type: ignore[arg-type]
    assert "quiet times cleared" in cleared.summary and debtor_window(acct) is None


def test_the_planner_arms_the_step_at_the_first_moment_inside_both() -> None:
    acct = account()
    assert earliest(acct, NOW, NOW, compliance.DEFAULT_RULES) == NOW  # no window: the gate decides later
    acct.contact_window = WINDOW.model_dump(mode="json")
    assert earliest(acct, NOW, NOW, compliance.DEFAULT_RULES) == ny(2026, 12, 7, 10, 0)
    saturday = ny(2026, 12, 12, 0, 0)
    assert earliest(acct, saturday, NOW, compliance.DEFAULT_RULES) == ny(2026, 12, 14, 10, 0)
    # a step already due while now is allowed stays where it is (a re-plan does not move it for nothing)
    inside = ny(2026, 12, 7, 11, 0)
    assert earliest(acct, ny(2026, 12, 7, 10, 30), inside, compliance.DEFAULT_RULES) == ny(
        2026, 12, 7, 10, 30
    )


def test_the_console_timeline_shows_the_debtors_preferences() -> None:
    from arrears_console.readmodels.handlers import summarize

    line = summarize(preference(contact_window=WINDOW.model_dump(mode="json")))
    assert line == (
        "contact preferences: channels email → sms; quiet times not before 10:00, not after 18:00, "
        "not on Sat, Sun by portal:debtor:abc (system)"
    )
    assert "quiet times" not in summarize(preference())  # a collector's channel change: no window
