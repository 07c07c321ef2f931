"""The compliance gate library (arrears_shared.compliance): rules as data, pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from arrears_shared.compliance import DEFAULT_RULES, Jurisdiction, RuleSet, evaluate, next_allowed
from arrears_shared.compliance.gate import candidate_zones
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NY = ZoneInfo("America/New_York")


def ny(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NY).astimezone(UTC)


def test_us_window_is_8_to_21_local_and_defers_to_next_8am() -> None:
    early = evaluate(ny(2026, 5, 4, 7, 59), channel="sms", timezone="America/New_York", country="US")
    assert not early.allowed and early.rule_id == "quiet_hours.US"
    assert early.defer_until == ny(2026, 5, 4, 8, 0)
    assert evaluate(ny(2026, 5, 4, 8, 0), channel="sms", timezone="America/New_York", country="US").allowed
    assert evaluate(
        ny(2026, 5, 4, 20, 59), channel="email", timezone="America/New_York", country="US"
    ).allowed
    late = evaluate(ny(2026, 5, 4, 21, 0), channel="sms", timezone="America/New_York", country="US")
    assert late.defer_until == ny(2026, 5, 5, 8, 0)
    assert "1006.6(b)(1)(i)" in late.reason


def test_india_window_ends_at_19() -> None:
    ist = ZoneInfo("Asia/Kolkata")
    at = datetime(2026, 5, 4, 19, 30, tzinfo=ist)
    d = evaluate(at, channel="sms", timezone="Asia/Kolkata", country="IN")
    assert not d.allowed and d.rule_id == "quiet_hours.IN"
    assert d.defer_until == datetime(2026, 5, 5, 8, 0, tzinfo=ist)
    assert evaluate(
        datetime(2026, 5, 4, 18, 59, tzinfo=ist), channel="sms", timezone=None, country="IN"
    ).allowed


def test_unknown_us_zone_requires_every_continental_zone_to_allow() -> None:
    zones, assumed = candidate_zones(None, "US", None)
    assert assumed and "America/Los_Angeles" in zones and "America/New_York" in zones
    # 10:59 New York = 07:59 Los Angeles: not yet; 11:00 NY = 08:00 LA: allowed
    d = evaluate(ny(2026, 5, 4, 10, 59), channel="sms", timezone=None, country="US")
    assert not d.allowed and d.zone_assumed and d.defer_until == ny(2026, 5, 4, 11, 0)
    assert evaluate(ny(2026, 5, 4, 11, 0), channel="sms", timezone=None, country="US").allowed
    # 21:00 in New York ends the window although it is only 18:00 in Los Angeles
    assert not evaluate(ny(2026, 5, 4, 21, 0), channel="sms", timezone="", country="US").allowed
    # an invalid zone name is treated as unknown
    assert evaluate(ny(2026, 5, 4, 9, 0), channel="sms", timezone="Mars/Olympus", country="US").zone_assumed


def test_region_narrows_candidate_zones() -> None:
    zones, _ = candidate_zones(None, "US", "TX")
    assert set(zones) == {"America/Chicago", "America/Denver"}
    # 08:30 Chicago = 07:30 Denver -> deferred to 08:00 Denver
    chi = ZoneInfo("America/Chicago")
    d = evaluate(
        datetime(2026, 5, 4, 8, 30, tzinfo=chi), channel="sms", timezone=None, country="US", region="TX"
    )
    assert d.defer_until == datetime(2026, 5, 4, 8, 0, tzinfo=ZoneInfo("America/Denver")).astimezone(UTC)


def test_state_override_is_configurable_data() -> None:
    rules = RuleSet.model_validate(
        {
            "default": DEFAULT_RULES.default.model_dump(),
            "jurisdictions": {
                **{k: v.model_dump() for k, v in DEFAULT_RULES.jurisdictions.items()},
                "US-ZZ": {
                    "window_start": "09:00",
                    "window_end": "20:00",
                    "window_source": "test state act",
                    "frequency_caps": {"sms": {"max_messages": 2, "window_days": 7}},
                },
            },
        }
    )
    at = ny(2026, 5, 4, 8, 30)
    assert evaluate(
        at, channel="sms", timezone="America/New_York", country="US", region="NY", rules=rules
    ).allowed
    d = evaluate(at, channel="sms", timezone="America/New_York", country="US", region="ZZ", rules=rules)
    assert d.rule_id == "quiet_hours.US-ZZ" and d.defer_until == ny(2026, 5, 4, 9, 0)
    capped = evaluate(
        ny(2026, 5, 4, 12, 0),
        channel="sms",
        timezone="America/New_York",
        country="US",
        region="ZZ",
        sent_in_window=2,
        rules=rules,
    )
    assert capped.rule_id == "frequency_cap.US-ZZ.sms" and not capped.allowed
    assert isinstance(rules.resolve("US", "ZZ").window_start, time)
    assert Jurisdiction().window_start is None  # overrides name only what they change


def test_opt_out_and_do_not_contact_suppress_without_deferral() -> None:
    at = ny(2026, 5, 4, 12, 0)
    d = evaluate(at, channel="sms", timezone="America/New_York", country="US", opted_out_channels={"sms"})
    assert d.suppressed and d.rule_id == "opt_out.sms"
    assert evaluate(
        at, channel="email", timezone="America/New_York", country="US", opted_out_channels={"sms"}
    ).allowed
    dnc = evaluate(at, channel="email", timezone="America/New_York", country="US", do_not_contact=True)
    assert dnc.suppressed and dnc.rule_id == "do_not_contact"


def test_frequency_cap_defers_until_the_oldest_send_leaves_the_window() -> None:
    now = ny(2026, 5, 10, 12, 0)
    sends = [now - timedelta(days=6, hours=1) + timedelta(hours=i) for i in range(7)]
    d = evaluate(now, channel="sms", timezone="America/New_York", country="US", recent_sends=sends)
    assert not d.allowed and d.rule_id == "frequency_cap.US.sms"
    assert d.defer_until == sends[0] + timedelta(days=7)
    assert evaluate(
        now, channel="sms", timezone="America/New_York", country="US", recent_sends=sends[1:]
    ).allowed
    # only a count: conservative full-window deferral, still inside the contact window
    c = evaluate(now, channel="email", timezone="America/New_York", country="US", sent_in_window=7)
    assert c.defer_until is not None and c.defer_until >= now + timedelta(days=7)


# -- properties -----------------------------------------------------------------------------------------

ZONES = sorted(z for z in available_timezones() if not z.startswith(("SystemV", "posix", "right")))
DST_ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Europe/Chisinau",
    "America/Havana",
    "Asia/Tehran",
    "Africa/Cairo",
]


def _transitions() -> list[datetime]:
    out = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for name in DST_ZONES:
        z = ZoneInfo(name)
        prev = start.astimezone(z).utcoffset()
        for h in range(1, 2 * 8760):
            t = start + timedelta(hours=h)
            off = t.astimezone(z).utcoffset()
            if off != prev:
                out.append(t)
            prev = off
    return out


TRANSITIONS = _transitions()
instants = st.one_of(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda t, m: t + timedelta(minutes=m), st.sampled_from(TRANSITIONS), st.integers(-36 * 60, 36 * 60)
    ),
)
places = st.one_of(
    st.tuples(st.sampled_from(ZONES), st.sampled_from([None, "US", "IN", "GB"]), st.just(None)),
    st.tuples(st.just(None), st.just("US"), st.sampled_from([None, "TX", "FL", "IN", "AK", "NY", "ZZ"])),
    st.tuples(st.just(None), st.sampled_from([None, "IN", "FR"]), st.just(None)),
)


def _inside(at: datetime, tz: str | None, country: str | None, region: str | None) -> bool:
    j = DEFAULT_RULES.resolve(country, region)
    zones, _ = candidate_zones(tz, country, region)
    return all(j.window_start <= at.astimezone(ZoneInfo(z)).time() < j.window_end for z in zones)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=instants, place=places, channel=st.sampled_from(["sms", "email"]))
def test_allowed_is_inside_window_and_deferral_is_allowed_and_later(now, place, channel) -> None:  # type: ignore[no-untyped-def]
    tz, country, region = place
    d = evaluate(now, channel=channel, timezone=tz, country=country, region=region)
    if d.allowed:
        assert _inside(now, tz, country, region)
        assert next_allowed(now, timezone=tz, country=country, region=region) == now
    else:
        assert d.defer_until is not None and d.defer_until > now
        assert not _inside(now, tz, country, region)
        assert _inside(d.defer_until, tz, country, region)
        assert evaluate(d.defer_until, channel=channel, timezone=tz, country=country, region=region).allowed
        # nothing earlier is allowed: the minute before the deferral is outside the window (or before now)
        before = d.defer_until - timedelta(minutes=1)
        assert before < now or not _inside(before, tz, country, region)


# -- weekends, holidays, stricter states -------------------------------------------------------------------

HOUSE = RuleSet.model_validate(
    {
        "default": DEFAULT_RULES.default.model_dump(),
        "jurisdictions": {
            **{k: v.model_dump(exclude_none=True) for k, v in DEFAULT_RULES.jurisdictions.items()},
            "US": {
                **DEFAULT_RULES.jurisdictions["US"].model_dump(exclude_none=True),
                "no_contact_weekdays": [7],
                "holiday_calendar": "US",
            },
            "IN": {
                **DEFAULT_RULES.jurisdictions["IN"].model_dump(exclude_none=True),
                "no_contact_weekdays": [6, 7],
                "extra_no_contact_dates": ["2026-08-17"],
            },
        },
    }
)


def test_weekends_and_public_holidays_defer_to_the_next_open_morning() -> None:
    sunday = ny(2026, 5, 10, 12, 0)
    assert evaluate(sunday, channel="sms", timezone="America/New_York", country="US").allowed  # shipped: open
    d = evaluate(sunday, channel="sms", timezone="America/New_York", country="US", rules=HOUSE)
    assert (d.rule_id, d.defer_until) == ("weekend.US", ny(2026, 5, 11, 8, 0))
    # Independence Day 2026: Saturday 4 July, observed Friday 3 July; Sunday 5th blocked -> Monday 08:00
    h = evaluate(
        ny(2026, 7, 3, 10, 0), channel="email", timezone="America/New_York", country="US", rules=HOUSE
    )
    assert (h.rule_id, h.defer_until) == ("holiday.US", ny(2026, 7, 6, 8, 0))
    assert next_allowed(ny(2026, 7, 4, 22, 0), timezone="America/New_York", country="US", rules=HOUSE) == ny(
        2026, 7, 6, 8, 0
    )
    kol = ZoneInfo("Asia/Kolkata")
    fri_night = datetime(2026, 8, 14, 19, 30, tzinfo=kol)  # after 19:00, then a weekend, then a house holiday
    i = evaluate(fri_night, channel="sms", timezone="Asia/Kolkata", country="IN", rules=HOUSE)
    assert (i.rule_id, i.defer_until) == ("quiet_hours.IN", datetime(2026, 8, 18, 8, 0, tzinfo=kol))
    # a state holiday of the debtor's region (Cesar Chavez Day is a California state holiday)
    ca = evaluate(
        datetime(2026, 3, 31, 12, tzinfo=ZoneInfo("America/Los_Angeles")),
        channel="sms",
        timezone="America/Los_Angeles",
        country="US",
        region="CA",
        rules=HOUSE,
    )
    assert ca.rule_id == "holiday.US"


def test_shipped_stricter_state_cap_for_massachusetts() -> None:
    at = ny(2026, 5, 6, 12, 0)
    two = [at - timedelta(days=2), at - timedelta(days=1)]
    ma = evaluate(at, channel="sms", timezone="America/New_York", country="US", region="MA", recent_sends=two)
    assert ma.rule_id == "frequency_cap.US-MA.sms" and ma.defer_until == two[0] + timedelta(days=7)
    assert evaluate(
        at, channel="sms", timezone="America/New_York", country="US", region="NY", recent_sends=two
    ).allowed
    assert evaluate(
        at, channel="email", timezone="America/New_York", country="US", region="MA", recent_sends=two
    ).allowed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=instants, place=places, channel=st.sampled_from(["sms", "email"]))
def test_with_day_rules_a_deferral_lands_on_an_open_day_inside_the_window(now, place, channel) -> None:  # type: ignore[no-untyped-def]
    tz, country, region = place
    d = evaluate(now, channel=channel, timezone=tz, country=country, region=region, rules=HOUSE)
    target = now if d.allowed else d.defer_until
    assert target is not None and target >= now
    j = HOUSE.resolve(country, region)
    zones, _ = candidate_zones(tz, country, region, HOUSE)
    for z in zones:
        local = target.astimezone(ZoneInfo(z))
        assert j.window_start <= local.time() < j.window_end
        assert local.isoweekday() not in j.no_contact_weekdays
    assert evaluate(target, channel=channel, timezone=tz, country=country, region=region, rules=HOUSE).allowed
