"""Valid example events for tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, date, datetime

from arrears_shared.events import AccountChanged


def account_changed(i: int, *, balance_minor: int = 12_345) -> AccountChanged:
    return AccountChanged(
        account_id=f"PME-{i:06d}",
        change="created",
        source="sheet",
        source_row=i + 2,
        customer_name=f"Customer {i}",
        phone="+14155550100",
        email=f"c{i}@example.com",
        balance_minor=balance_minor,
        currency="USD",
        due_date=date(2026, 9, 1),
        timezone="America/Los_Angeles",
        country="US",
        region="CA",
        sms_consent=True,
        email_consent=True,
        content_hash=f"h{i}",
        as_of=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    )
