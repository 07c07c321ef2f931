"""A promise a person took holds the sequence like a promise in a reply (pure override action)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from arrears_segmenter.accounts.account import Account
from arrears_segmenter.overrides.actions import Rejected, apply
from arrears_shared.events import OverrideRequested

NOW = datetime(2026, 7, 1, 15, tzinfo=UTC)


def event(**kw: object) -> OverrideRequested:
    base = dict(
        account_id="A-1",
        override_id="o-1",
        action="record_promise",
        actor="ana",
        role="collector",
        requested_at=NOW,
    )
    return OverrideRequested.model_validate(base | kw)


def row(**kw: Any) -> Account:
    r = replace(
        Account.new("A-1", NOW),
        timezone="America/New_York",
        source_status="open",
        status="open",
        balance_minor=50_000,
    )
    return replace(r, **kw)


def test_a_promise_holds_the_sequence_until_the_promised_day() -> None:
    r = row()
    applied = apply(
        r, event(promise_date=date(2026, 7, 10), promise_amount_minor=20_000), None, NOW, band="low"
    )  # type: ignore[arg-type]
    assert applied.outcome == "updated" and "2026-07-10" in applied.summary
    assert (r.hold, r.promise_hold_until, r.promise_amount_minor) == ("promise", date(2026, 7, 10), 20_000)


def test_a_dispute_is_not_lifted_by_a_promise() -> None:
    r = row(hold="dispute")
    applied = apply(r, event(promise_date=date(2026, 7, 10)), None, NOW, band="low")  # type: ignore[arg-type]
    assert r.hold == "dispute" and "dispute hold stays" in applied.summary


@pytest.mark.parametrize("promised", [None, date(2026, 6, 30)])
def test_a_promise_needs_a_day_not_yet_past_in_the_debtors_zone(promised: date | None) -> None:
    with pytest.raises(Rejected):
        apply(row(), event(promise_date=promised), None, NOW, band="low")  # type: ignore[arg-type]
