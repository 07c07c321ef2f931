"""The aging report keeps per-currency figures and adds reporting-currency totals (with the rates' date):
accounts through the real batch handler into real Postgres, then the report query and the page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from arrears_console.readmodels import service
from arrears_console.readmodels.handlers import handle_events
from arrears_console.web.page import render
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged
from arrears_shared.money import RateTable
from arrears_shared.stream.transaction import Transaction
from hypothesis import given
from hypothesis import strategies as st

TODAY = date(2026, 12, 4)
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def account(acc: str, balance: int, currency: str, dpd: int) -> AccountChanged:
    return AccountChanged(
        account_id=acc, change="created", source="sheet", source_row=2, customer_name=f"Name {acc}",
        balance_minor=balance, currency=currency, due_date=TODAY - timedelta(days=dpd), content_hash=f"h-{acc}",
        as_of=NOW,
    )  # fmt: skip


async def test_aging_report_has_reporting_currency_totals(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("console_fx")
    await asyncio.to_thread(upgrade, url, "console")
    items = [
        account("I-1", 4_500_000, "INR", 45),  # 45,000.00 INR = 540.00 USD
        account("I-2", 1_000_050, "INR", 45),  # 10,000.50 INR = 120.006 -> 120.01 USD (sum converted once)
        account("U-1", 999_999_900, "USD", 100),  # 9,999,999.00 USD
        account("J-1", 100_000, "JPY", 10),  # 100,000 yen = 650.00 USD
        account("K-1", 1_000, "KWD", 200),  # 1.000 KWD = 3.26 USD
        account("X-1", 777, "XTS", 45),  # no rate: left out of the USD totals, shown per currency
        account("P-1", 0, "USD", 45),  # nothing outstanding: not in the report
    ]
    envs = [
        decode(r.headers, r.value)
        for r in (encode(e, source="test", id=f"fx-{i}") for i, e in enumerate(items))
    ]
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await handle_events(envs, Transaction(conn, "console", "console"))
        async with engine.connect() as conn:
            report = await service.aging(conn, "console", TODAY)  # the configured (packaged) rates
            eur = RateTable(
                reporting_currency="EUR",
                as_of=date(2026, 11, 30),
                rates={"USD": Decimal("0.86"), "INR": Decimal("0.0103")},
            )
            in_eur = await service.aging(conn, "console", TODAY, eur)
            page = render(
                aging=report,
                summary=await service.summary(conn, "console"),
                timeline=await service.timeline(conn, "console", None, 5),
                dlq=await service.dlq(conn, "console", 5),
                rejects=await service.rejects(conn, "console", 5),
            )
    finally:
        await engine.dispose()

    assert (report.reporting_currency, report.rates_as_of) == ("USD", date(2026, 12, 1))
    cells = {(r.currency, r.bucket): r for r in report.rows}
    inr = cells[("INR", "31-60")]
    assert (inr.accounts, inr.balance_minor, inr.reporting_minor) == (2, 5_500_050, 66_001)  # 660.006 USD
    assert cells[("USD", "91-120")].reporting_minor == 999_999_900
    assert cells[("JPY", "1-30")].reporting_minor == 65_000
    assert cells[("KWD", "120+")].reporting_minor == 326
    assert cells[("XTS", "31-60")].reporting_minor is None and report.unpriced_currencies == ["XTS"]
    totals = {t.currency: t for t in report.currencies}
    assert totals["INR"].balance_minor == 5_500_050 and totals["XTS"].reporting_minor is None
    assert report.reporting_by_bucket == {
        "current": 0, "1-30": 65_000, "31-60": 66_001, "61-90": 0, "91-120": 999_999_900, "120+": 326,
    }  # fmt: skip
    assert report.reporting_total_minor == 65_000 + 66_001 + 999_999_900 + 326
    assert report.reporting_total_minor == sum(
        t.reporting_minor for t in report.currencies if t.reporting_minor is not None
    )
    # another reporting currency: what has a rate is converted, the rest is listed as left out
    assert (in_eur.reporting_currency, in_eur.rates_as_of) == ("EUR", date(2026, 11, 30))
    assert in_eur.unpriced_currencies == ["JPY", "KWD", "XTS"]
    assert in_eur.reporting_total_minor == 859_999_914 + 56_651  # 8,599,999.14 + 566.51 (5,500,050 * .0103)
    # the page: per-currency rows in their own money, the USD total and the rates' date
    assert "55,000.50 INR (2)" in page and "660.01 USD" in page
    assert "total in USD" in page and "10,001,312.27 USD" in page
    assert "100,000 JPY" in page and "1.000 KWD" in page
    assert "USD figures at the rates of 2026-12-01" in page and "(no rate): XTS" in page


@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=20))
def test_the_reporting_total_of_one_currency_is_one_rounding_of_its_sum(balances: list[int]) -> None:
    """Each (bucket, currency) cell is converted once from its sum: within half a minor unit of the exact
    value, so a report never drifts by a minor unit per account."""
    rates = RateTable(reporting_currency="USD", as_of=date(2026, 12, 1), rates={"INR": Decimal("0.012")})
    converted = rates.to_reporting_minor(sum(balances), "INR")
    assert converted is not None
    assert abs(converted - Decimal(sum(balances)) * Decimal("0.012")) <= Decimal("0.5")
