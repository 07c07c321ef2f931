"""The `high_value` rule compares balances converted to the reporting currency (properties over the rule
matcher, then the real handler and Postgres)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from arrears_escalation.cases.service import list_cases
from arrears_escalation.rules.service import Facts, load_rules, matches, rule
from arrears_shared.events import AccountChanged
from arrears_shared.money import RateTable, packaged_rates
from hypothesis import given
from hypothesis import strategies as st

from .test_escalation import handle
from .test_rules import account, deps

RATES = packaged_rates()
PRICED = sorted(set(RATES.rates) | {RATES.reporting_currency})
HIGH_VALUE = rule(load_rules(), "high_value")
assert HIGH_VALUE is not None and HIGH_VALUE.conditions.min_balance_minor == 500_000  # 5,000.00 USD


def priced(aid: str, balance: int, currency: str) -> AccountChanged:
    return account(aid, balance).model_copy(update={"currency": currency})


@given(st.sampled_from(PRICED), st.integers(min_value=0, max_value=10**13))
def test_high_value_iff_the_converted_balance_reaches_the_threshold(currency: str, balance: int) -> None:
    assert HIGH_VALUE is not None
    converted = RATES.to_reporting_minor(balance, currency)
    assert converted is not None
    got = matches(HIGH_VALUE, Facts(balance_minor=balance, currency=currency), RATES)
    assert got == (converted >= 500_000)
    # the same value stated in the reporting currency is decided the same way
    assert matches(HIGH_VALUE, Facts(balance_minor=converted, currency="USD"), RATES) == got


@given(st.sampled_from(["XTS", "ZZZ"]), st.integers(min_value=1, max_value=10**12))
def test_a_balance_without_a_rate_counts_as_high_value(currency: str, balance: int) -> None:
    assert HIGH_VALUE is not None
    facts = Facts(balance_minor=balance, currency=currency)
    assert facts.unpriced(RATES) and matches(HIGH_VALUE, facts, RATES)


def test_the_issue_example_and_other_reporting_currencies() -> None:
    assert HIGH_VALUE is not None
    assert not matches(HIGH_VALUE, Facts(balance_minor=4_500_000, currency="INR"), RATES)  # ~540 USD
    assert matches(HIGH_VALUE, Facts(balance_minor=999_999_900, currency="USD"), RATES)
    assert matches(HIGH_VALUE, Facts(balance_minor=1_000_000, currency="JPY"), RATES)  # 6,500.00 USD
    assert not matches(HIGH_VALUE, Facts(balance_minor=1_000_000, currency="KWD"), RATES)  # 3,260.00 USD
    eur = RateTable(reporting_currency="EUR", as_of=date(2026, 12, 1), rates={"USD": Decimal("0.86")})
    # with EUR reporting, 5,000.00 is EUR: 5,500.00 USD = 4,730.00 EUR is below it
    assert not matches(HIGH_VALUE, Facts(balance_minor=550_000, currency="USD"), eur)
    assert matches(HIGH_VALUE, Facts(balance_minor=600_000, currency="USD"), eur)


async def test_high_value_cases_per_currency(engine) -> None:  # type: ignore[no-untyped-def]
    d = deps()
    await handle(
        engine,
        d,
        priced("FXE-INR", 4_500_000, "INR"),
        priced("FXE-USD", 999_999_900, "USD"),
        priced("FXE-JPY", 1_000_000, "JPY"),
        priced("FXE-XTS", 100, "XTS"),
    )
    async with engine.connect() as c:
        cases = {a: await list_cases(c, None, a) for a in ("FXE-INR", "FXE-USD", "FXE-JPY", "FXE-XTS")}
    assert cases["FXE-INR"] == []
    assert [x.reason for x in cases["FXE-USD"]] == ["high_value"]
    [jpy] = cases["FXE-JPY"]
    assert jpy.reason == "high_value" and "balance 1,000,000 JPY" in (jpy.detail or "")
    [xts] = cases["FXE-XTS"]
    assert xts.reason == "high_value" and "no USD rate for XTS" in (xts.detail or "")


async def test_promises_read_in_their_currencys_own_decimals_on_the_timeline(engine) -> None:  # type: ignore[no-untyped-def]
    """A person's or the portal's promise names no currency: the account's is kept with it, so 1234 minor
    units read 1,234 JPY and 1.234 KWD, not 12.34 (they were divided by 100 in SQL)."""
    from datetime import UTC, datetime

    from arrears_escalation.promises.service import add_promise
    from arrears_escalation.timeline.service import timeline
    from arrears_shared.events import Intent

    from .test_rules import reply

    d = deps()
    await handle(engine, d, priced("TL-JPY", 900_000, "JPY"), priced("TL-KWD", 9_000, "KWD"))
    async with engine.begin() as conn:
        for aid in ("TL-JPY", "TL-KWD", "TL-NONE"):
            await add_promise(
                conn,
                promise_id=f"p-{aid}",
                account_id=aid,
                amount_minor=1234,
                due_date=date(2026, 12, 24),
                made_at=datetime(2026, 12, 1, 12, tzinfo=UTC),
                channel=None,
                collector="cora",
            )
        lines = {
            aid: [i.summary for i in (await timeline(conn, aid))[0] if i.kind == "promise.made"]
            for aid in ("TL-JPY", "TL-KWD", "TL-NONE")
        }
    assert lines == {
        "TL-JPY": ["promise to pay by 2026-12-24: 1,234 JPY"],
        "TL-KWD": ["promise to pay by 2026-12-24: 1.234 KWD"],
        "TL-NONE": ["promise to pay by 2026-12-24: 12.34"],  # escalation never saw the account: no currency
    }
    line = reply(
        "TL-JPY", Intent.PROMISE_TO_PAY, "r-jpy", promise_amount_minor=5000, promise_currency="JPY",
        promise_date=date(2026, 12, 24),
    ).summary()  # fmt: skip
    assert ", promise 5,000 JPY from 2026-12-24" in line, line
