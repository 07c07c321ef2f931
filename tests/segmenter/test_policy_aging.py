"""Policy data, step selection and aging, pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from arrears_segmenter.aging import aging_bucket, days_past_due, moment_dpd_reaches, parse_boundaries
from arrears_segmenter.schedule.models import Policy, load_policy
from arrears_segmenter.schedule.planner import first_step, plan_next
from arrears_shared.events import AgingBucket, Tier
from pydantic import ValidationError


def test_default_policy_is_versioned_data() -> None:
    p = load_policy()
    assert (p.id, p.version) == ("default", 1)
    assert [(s.tier, s.min_days_past_due) for s in p.steps] == [
        (Tier.REMINDER, 1),
        (Tier.FIRM, 30),
        (Tier.FINAL, 60),
    ]
    assert all(s.min_interval_days == 7 for s in p.steps[1:])
    assert p.steps[0].channels == ["sms", "email"]
    with pytest.raises(ValidationError):
        Policy.model_validate(
            {
                "id": "x",
                "version": 1,
                "steps": [
                    {
                        "step": 1,
                        "tier": "firm",
                        "min_days_past_due": 30,
                        "channels": ["sms"],
                        "template_id": "a",
                    },
                    {
                        "step": 2,
                        "tier": "reminder",
                        "min_days_past_due": 1,
                        "channels": ["sms"],
                        "template_id": "b",
                    },
                ],
            }
        )


def test_first_appearance_picks_the_highest_step_met_under_by_age() -> None:
    p = load_policy().model_copy(update={"start_tier": "by_age"})  # the default starts at step 1
    assert first_step(p, 0) is None
    assert first_step(p, 1) == 1
    assert first_step(p, 29) == 1
    assert first_step(p, 30) == 2
    assert first_step(p, 200) == 3


def test_plan_next_respects_threshold_and_interval() -> None:
    p = load_policy()
    now = datetime(2026, 3, 10, 15, tzinfo=UTC)
    due = date(2026, 3, 1)
    # not yet overdue -> step 1 at local midnight when dpd reaches 1
    plan = plan_next(
        p, last_step=0, last_step_at=None, due_date=date(2026, 3, 20), tz="America/New_York", now=now
    )
    assert plan is not None and plan.step == 1
    assert plan.due_at == datetime(2026, 3, 21, 4, tzinfo=UTC)  # 00:00 EDT
    # after step 1 at dpd 9: firm waits for dpd 30 (later than +7 days)
    plan = plan_next(p, last_step=1, last_step_at=now, due_date=due, tz="UTC", now=now)
    assert plan is not None and (plan.step, plan.due_at) == (2, datetime(2026, 3, 31, tzinfo=UTC))
    # first seen at dpd 58 (firm); final threshold (dpd 60) is 2 days away but the interval is 7 days
    seen = datetime(2026, 4, 28, 12, tzinfo=UTC)
    plan = plan_next(p, last_step=2, last_step_at=seen, due_date=due, tz="UTC", now=seen)
    assert plan is not None and (plan.step, plan.due_at) == (3, seen + timedelta(days=7))
    assert plan_next(p, last_step=3, last_step_at=seen, due_date=due, tz="UTC", now=seen) is None


def test_days_past_due_uses_the_debtors_calendar() -> None:
    due = date(2026, 3, 1)
    at = datetime(2026, 3, 2, 3, 30, tzinfo=UTC)  # 2 Mar in UTC, still 1 Mar in Los Angeles, 2 Mar in Tokyo
    assert days_past_due(due, at, "America/Los_Angeles") == 0
    assert days_past_due(due, at, "Asia/Tokyo") == 1
    assert days_past_due(due, at, None) == 1  # unknown -> UTC
    assert days_past_due(due, at, "Not/AZone") == 1
    assert days_past_due(date(2026, 5, 1), at, "UTC") == 0  # not yet due
    # DST (8 Mar 2026 in New York): dpd 7 starts at 00:00 EST (05:00Z), dpd 8 at 00:00 EDT (04:00Z)
    assert moment_dpd_reaches(due, 8, "America/New_York") == datetime(2026, 3, 9, 4, tzinfo=UTC)
    assert moment_dpd_reaches(due, 7, "America/New_York") == datetime(2026, 3, 8, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("dpd", "bucket"),
    [
        (0, AgingBucket.CURRENT),
        (1, AgingBucket.D1_30),
        (30, AgingBucket.D1_30),
        (31, AgingBucket.D31_60),
        (60, AgingBucket.D31_60),
        (61, AgingBucket.D61_90),
        (90, AgingBucket.D61_90),
        (91, AgingBucket.D91_120),
        (120, AgingBucket.D91_120),
        (121, AgingBucket.D120_PLUS),
    ],
)
def test_aging_buckets(dpd: int, bucket: AgingBucket) -> None:
    assert aging_bucket(dpd) == bucket


def test_aging_boundaries_are_configurable() -> None:
    b = parse_boundaries("15,45,75,105")
    assert aging_bucket(16, b) == AgingBucket.D31_60
    assert aging_bucket(106, b) == AgingBucket.D120_PLUS
    with pytest.raises(ValueError):
        parse_boundaries("30,20,90,120")
