"""Money is per currency: the approval gate, balance bands and campaign balance criteria compare balances
converted to the reporting currency (properties over the pure functions, then the real handler, timer tick
and Postgres)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from arrears_segmenter.accounts.account import Account
from arrears_segmenter.accounts.projection import FoldContext, refresh_segment
from arrears_segmenter.accounts.service import account_view
from arrears_segmenter.approvals.service import held
from arrears_segmenter.campaigns.models import Criteria
from arrears_segmenter.schedule.models import Policy, PolicyError, check_currencies, load_policy
from arrears_segmenter.schedule.service import load_new_version
from arrears_segmenter.segments import BAND_NAMES, DEFAULT_BALANCE_BANDS, balance_band
from arrears_shared.money import RateTable, packaged_rates
from hypothesis import given
from hypothesis import strategies as st

from .support import account, decisions, deps, handle, notices, run_tick

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # dpd 45 for due 1 Mar
RATES = packaged_rates()
PRICED = sorted(set(RATES.rates) | {RATES.reporting_currency})
balances = st.integers(min_value=0, max_value=10**13)


def with_threshold(limit: int | None, currency: str | None = None) -> Policy:
    base = load_policy()
    approval = base.approval.model_copy(
        update={"balance_above_minor": limit, "currency": currency, "complex_accounts": True}
    )
    return base.model_copy(update={"approval": approval})


def test_the_issue_example_inr_is_not_held_usd_is() -> None:
    policy = load_policy()  # 10,000.00 USD
    assert policy.needs_approval(4_500_000, "INR", False, RATES) is None  # 45,000.00 INR ~ 540 USD
    assert policy.needs_approval(999_999_900, "USD", False, RATES) == "approval.high_balance"
    assert policy.needs_approval(100_000_000, "JPY", False, RATES) == "approval.high_balance"  # 650,000 USD
    assert policy.needs_approval(4_500_000, "INR", True, RATES) == "approval.complex"  # flags still apply


@given(st.sampled_from(PRICED), balances, st.integers(min_value=0, max_value=10**12))
def test_held_iff_the_converted_balance_is_above_the_threshold(
    currency: str, balance: int, limit: int
) -> None:
    policy = with_threshold(limit)
    converted = RATES.to_reporting_minor(balance, currency)
    assert converted is not None
    held_for = policy.needs_approval(balance, currency, False, RATES)
    assert (held_for == "approval.high_balance") == (converted > limit)
    assert held_for in (None, "approval.high_balance")
    # the same value stated in the reporting currency is decided the same way
    same = policy.needs_approval(converted, RATES.reporting_currency, False, RATES)
    assert same == held_for


@given(st.sampled_from(PRICED), balances, balances)
def test_more_money_is_never_less_held(currency: str, a: int, b: int) -> None:
    policy = load_policy()
    lo, hi = sorted((a, b))
    if policy.needs_approval(lo, currency, False, RATES) is not None:
        assert policy.needs_approval(hi, currency, False, RATES) is not None


@given(st.sampled_from(["XTS", "ZZZ", None]), st.integers(min_value=1, max_value=10**12))
def test_a_balance_without_a_rate_is_held_for_a_person(currency: str | None, balance: int) -> None:
    assert load_policy().needs_approval(balance, currency, False, RATES) == "approval.unpriced_currency"
    assert with_threshold(None).needs_approval(balance, currency, False, RATES) is None  # no money gate
    assert load_policy().needs_approval(0, currency, False, RATES) is None  # nothing owed, nothing to value


def test_threshold_in_another_currency_is_converted_and_must_be_priced() -> None:
    eur = with_threshold(1_000_000, "EUR")  # 10,000.00 EUR = 11,600.00 USD at the packaged rates
    assert eur.needs_approval(1_100_000, "USD", False, RATES) is None
    assert eur.needs_approval(1_160_001, "USD", False, RATES) == "approval.high_balance"
    assert eur.needs_approval(1_000_001, "EUR", False, RATES) == "approval.high_balance"
    assert check_currencies(eur, RATES) == []
    problems = check_currencies(with_threshold(1_000_000, "XTS"), RATES)
    assert (
        problems and problems[0]["loc"] == "approval.currency" and "no USD rate for XTS" in problems[0]["msg"]
    )


def test_jpy_and_kwd_exponents_in_the_gate() -> None:
    """Each currency's own exponent, and the one rounding to the reporting minor unit (half away from 0)."""
    policy = load_policy()  # above 10,000.00 USD
    assert policy.needs_approval(1_538_462, "JPY", False, RATES) is None  # 10,000.003 USD -> 10,000.00
    assert policy.needs_approval(1_538_463, "JPY", False, RATES) == "approval.high_balance"  # 10,000.0095
    assert policy.needs_approval(3_067_486, "KWD", False, RATES) is None  # 3,067.486 KWD = 10,000.00436 USD
    assert policy.needs_approval(3_067_488, "KWD", False, RATES) == "approval.high_balance"  # 10,000.01088


@given(st.sampled_from(PRICED), balances, balances)
def test_bands_follow_the_converted_balance(currency: str, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    band_lo = balance_band(RATES.to_reporting_minor(lo, currency))
    band_hi = balance_band(RATES.to_reporting_minor(hi, currency))
    assert BAND_NAMES.index(band_lo) <= BAND_NAMES.index(band_hi)


def test_band_of_inr_jpy_and_unknown_currency() -> None:
    def band(balance: int, currency: str | None) -> str:
        acct = replace(Account.new("B-1", NOON_NY), balance_minor=balance, currency=currency)
        refresh_segment(acct, FoldContext(now=NOON_NY))
        return acct.balance_band

    assert DEFAULT_BALANCE_BANDS == (10_000, 100_000, 1_000_000)
    assert band(4_500_000, "INR") == "medium"  # 45,000.00 INR = 540.00 USD (not very_high as before)
    assert band(4_500_000, "USD") == "very_high"
    assert band(200_000, "JPY") == "high"  # 200,000 yen = 1,300.00 USD
    assert band(100, "XTS") == "very_high"  # no rate: the top band (more attention, not less)
    assert band(0, None) == "low"
    other = FoldContext(
        now=NOON_NY,
        rates=RateTable(reporting_currency="INR", as_of=date(2026, 12, 1), rates={"USD": Decimal("83.3")}),
    )
    acct = replace(Account.new("B-2", NOON_NY), balance_minor=4_500_000, currency="INR")
    refresh_segment(acct, other)
    assert acct.balance_band == "very_high"  # in an INR-reporting setup 45,000 INR is above 10,000 INR


def test_campaign_balance_criteria_are_in_the_reporting_currency() -> None:
    c = Criteria(min_balance_minor=40_000)  # 400.00 USD
    acct = replace(Account.new("C-1", NOON_NY), history="clean", country="IN")
    assert c.matches(replace(acct, balance_minor=4_500_000, currency="INR"), 45, "31-60", "low", RATES)
    assert not c.matches(replace(acct, balance_minor=3_000_000, currency="INR"), 45, "31-60", "low", RATES)
    assert not c.matches(replace(acct, balance_minor=10**9, currency="XTS"), 45, "31-60", "low", RATES)
    assert Criteria().matches(replace(acct, balance_minor=10**9, currency="XTS"), 45, "31-60", "low", RATES)


async def test_gate_through_the_handler_and_tick(engine) -> None:  # type: ignore[no-untyped-def]
    d = deps(NOON_NY)
    await handle(
        engine,
        d,
        account("FX-INR", balance_minor=4_500_000, currency="INR"),
        account("FX-USD", balance_minor=999_999_900, currency="USD"),
        account("FX-XTS", balance_minor=5_000, currency="XTS"),
        account("FX-JPY", balance_minor=200_000, currency="JPY"),
    )
    await run_tick(engine, d)
    assert [n["currency"] for n in await notices(engine, "FX-INR")] == ["INR", "INR"]  # sent, not held
    assert await notices(engine, "FX-JPY") != []
    assert await notices(engine, "FX-USD") == [] and await notices(engine, "FX-XTS") == []
    async with engine.connect() as c:
        waiting = {h.account_id: h.rule_id for h in await held(c)}
        view = await account_view(c, "FX-INR", d, NOON_NY)
        xts = await account_view(c, "FX-XTS", d, NOON_NY)
    assert waiting["FX-USD"] == "approval.high_balance"
    assert waiting["FX-XTS"] == "approval.unpriced_currency"
    assert "FX-INR" not in waiting and "FX-JPY" not in waiting
    assert view is not None and view.balance_band == "medium"
    assert xts is not None and xts.balance_band == "very_high"
    assert any(r["rule_id"] == "approval.unpriced_currency" for r in await decisions(engine, "FX-XTS"))


async def test_a_policy_threshold_in_a_currency_without_a_rate_is_rejected(engine) -> None:  # type: ignore[no-untyped-def]
    d = deps(NOON_NY)
    text = (
        (__import__("importlib.resources").resources.files("arrears_segmenter") / "policies" / "default.yaml")
        .read_text()
        .replace("version: 1", "version: 9")
        .replace("currency: USD", "currency: XTS")
    )
    with pytest.raises(PolicyError) as e:
        async with engine.begin() as c:
            await load_new_version(c, text, "ops", d, NOON_NY)
    assert e.value.errors[0]["loc"] == "approval.currency"
