"""arrears_shared.money: exponents, exact conversion to the reporting currency, rounding, the rates file."""

from __future__ import annotations

import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from arrears_shared.money import (
    RateTable,
    format_minor,
    load_rates,
    minor_exponent,
    packaged_rates,
    parse_rates,
    to_decimal,
)
from hypothesis import given
from hypothesis import strategies as st

CODES = ["USD", "EUR", "INR", "JPY", "KWD", "CLF", "GBP", "BHD", "KRW"]
amounts = st.integers(min_value=-(10**15), max_value=10**15)
rates = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("10000"), places=6).filter(
    lambda d: d > 0
)


@st.composite
def tables(draw: st.DrawFn) -> RateTable:
    rep = draw(st.sampled_from(CODES))
    codes = [c for c in CODES if c != rep]
    others = draw(st.dictionaries(st.sampled_from(codes), rates, min_size=1, max_size=len(codes)))
    return RateTable(reporting_currency=rep, as_of=date(2026, 12, 1), rates=others)


def reference(amount_minor: int, currency: str, t: RateTable) -> Decimal:
    """The conversion done the slow, obvious way: Decimal units, then quantize to the reporting minor unit."""
    rate = Decimal(1) if currency == t.reporting_currency else t.rates[currency]
    units = to_decimal(amount_minor, currency) * rate
    return units.scaleb(minor_exponent(t.reporting_currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP)


def test_exponents() -> None:
    assert (minor_exponent("JPY"), minor_exponent("USD"), minor_exponent("KWD"), minor_exponent("CLF")) == (
        0,
        2,
        3,
        4,
    )
    assert format_minor(1234, "JPY") == "1,234 JPY"
    assert format_minor(1234, "KWD") == "1.234 KWD"
    assert format_minor(-123456, "USD") == "-1,234.56 USD"
    assert format_minor(5, "EUR") == "0.05 EUR"


def test_the_issue_example() -> None:
    """45,000.00 INR is about 540 USD; 9,999,999.00 USD is itself. The default approval threshold is 10,000.00
    USD: only the second is above it."""
    t = packaged_rates()
    assert t.reporting_currency == "USD" and t.as_of == date(2026, 12, 1)
    assert t.to_reporting_minor(4_500_000, "INR") == 54_000
    assert t.to_reporting_minor(999_999_900, "USD") == 999_999_900
    assert t.to_reporting_minor(4_500_000, "INR") < 1_000_000 < t.to_reporting_minor(999_999_900, "USD")  # type: ignore[operator]


def test_exponent_handling_jpy_kwd() -> None:
    t = RateTable(
        reporting_currency="USD",
        as_of=date(2026, 12, 1),
        rates={"JPY": Decimal("0.0065"), "KWD": Decimal("3.26")},
    )
    assert t.to_reporting_minor(100_000, "JPY") == 65_000  # 100,000 yen (exponent 0) = 650.00 USD
    assert t.to_reporting_minor(1_000, "KWD") == 326  # 1.000 KWD (exponent 3) = 3.26 USD
    assert t.to_reporting_minor(1, "KWD") == 0  # 0.001 KWD = 0.00326 USD -> 0.00
    assert t.to_reporting_minor(2, "KWD") == 1  # 0.00652 -> 0.01 (half up)
    jpy = RateTable(reporting_currency="JPY", as_of=date(2026, 12, 1), rates={"USD": Decimal("153.85")})
    assert jpy.to_reporting_minor(100, "USD") == 154  # 1.00 USD = 153.85 yen -> 154 (no fraction in JPY)
    kwd = RateTable(reporting_currency="KWD", as_of=date(2026, 12, 1), rates={"JPY": Decimal("0.002")})
    assert kwd.to_reporting_minor(1, "JPY") == 2  # 1 yen = 0.002 KWD = 2 fils


def test_unknown_currency_and_zero() -> None:
    t = packaged_rates()
    assert t.to_reporting_minor(100, "XTS") is None and not t.has_rate("XTS")
    assert t.to_reporting_minor(100, None) is None
    assert t.to_reporting_minor(0, "XTS") == 0  # zero is zero in every currency


def test_rounding_is_half_away_from_zero() -> None:
    t = RateTable(reporting_currency="USD", as_of=date(2026, 12, 1), rates={"EUR": Decimal("0.5")})
    assert [t.to_reporting_minor(a, "EUR") for a in (1, 3, -1, -3, 2)] == [1, 2, -1, -2, 1]


@given(tables(), st.data(), amounts)
def test_conversion_matches_decimal_reference(t: RateTable, data: st.DataObject, amount: int) -> None:
    cur = data.draw(st.sampled_from([t.reporting_currency, *t.rates]))
    assert t.to_reporting_minor(amount, cur) == int(reference(amount, cur, t))


@given(tables(), st.data(), amounts, amounts)
def test_conversion_is_monotonic(t: RateTable, data: st.DataObject, a: int, b: int) -> None:
    cur = data.draw(st.sampled_from([t.reporting_currency, *t.rates]))
    lo, hi = sorted((a, b))
    x, y = t.to_reporting_minor(lo, cur), t.to_reporting_minor(hi, cur)
    assert x is not None and y is not None and x <= y
    assert t.to_reporting_minor(-lo, cur) == -x  # symmetric around zero


@given(tables(), st.data(), amounts, st.integers(min_value=0, max_value=10**12))
def test_threshold_is_consistent_across_currencies(
    t: RateTable, data: st.DataObject, amount: int, threshold: int
) -> None:
    """An amount is above a reporting-currency threshold iff its exact value is, up to the one rounding:
    an exact value more than half a reporting minor unit above (below) the threshold always is (is not)."""
    cur = data.draw(st.sampled_from(list(t.rates)))
    converted = t.to_reporting_minor(amount, cur)
    assert converted is not None
    exact = to_decimal(amount, cur) * t.rates[cur] * Decimal(10) ** minor_exponent(t.reporting_currency)
    assert abs(converted - exact) <= Decimal("0.5")
    if exact > threshold + Decimal("0.5"):
        assert converted > threshold
    if exact <= threshold - Decimal("0.5"):
        assert converted <= threshold
    # the same value stated in the reporting currency compares the same way
    same = t.to_reporting_minor(converted, t.reporting_currency)
    assert (same > threshold) == (converted > threshold)  # type: ignore[operator]


def test_parse_and_load(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(
        json.dumps({"reporting_currency": "EUR", "as_of": "2026-11-30", "rates": {"USD": "0.86"}})
    )
    t = load_rates(path, today=date(2026, 12, 1))
    assert (t.reporting_currency, t.as_of, t.rates["USD"]) == ("EUR", date(2026, 11, 30), Decimal("0.86"))
    assert t.to_reporting_minor(10_000, "USD") == 8_600
    # a JSON number is read exactly as a decimal, never through a float
    path.write_text('{"reporting_currency": "USD", "as_of": "2026-11-30", "rates": {"INR": 0.0118}}')
    assert load_rates(path).rates["INR"] == Decimal("0.0118")
    assert parse_rates(t.to_json()) == t


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"as_of": "2026-12-01", "rates": {}}, "reporting_currency is required"),
        ({"reporting_currency": "USD", "rates": {}}, "as_of is required"),
        ({"reporting_currency": "USD", "as_of": "yesterday", "rates": {}}, "Invalid isoformat"),
        ({"reporting_currency": "usd", "as_of": "2026-12-01", "rates": {}}, "3-letter"),
        ({"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"EUR": "-1"}}, "positive"),
        ({"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"EUR": "abc"}}, "not a decimal"),
        ({"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"EUR": 1.1}}, "as a string"),
        ({"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"USD": "2"}}, "must be 1"),
        ({"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {}, "extra": 1}, "unknown keys"),
    ],
)
def test_bad_rates_are_rejected_with_a_reason(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rates(doc)
