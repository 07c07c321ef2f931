"""Money across currencies: ISO 4217 minor-unit exponents and conversion to one reporting currency.

Amounts are integer minor units of their own currency everywhere (cents, yen, fils ...). A money threshold
(the segmenter's approval gate and balance bands, campaign balance criteria, the escalation `high_value`
rule) is stated in minor units of the **reporting currency**, and an amount is converted to it before it is
compared, so 45,000.00 INR (about 540 USD) is not treated like 45,000.00 USD.

Rates are data with a date: a JSON file (`ARREARS_FX_RATES_FILE`, default the packaged
`arrears_shared/data/fx_rates.json`)::

    {"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"EUR": "1.05", "INR": "0.0118"}}

A rate is how many units (not minor units) of the reporting currency one unit of that currency is worth;
write it as a string (or a JSON number, read exactly as a decimal). The reporting currency itself is 1.

Conversion is exact integer arithmetic (no floats): `amount_minor * rate * 10**(exp_reporting - exp_currency)`
rounded once to the nearest reporting minor unit, halves away from zero (`ROUND_HALF_UP` in `decimal`).
An amount in a currency without a rate converts to None (zero is zero in every currency): each caller treats
that conservatively and says so (`note_unpriced` logs it once per currency and counts
`arrears_fx_unpriced_total`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# ISO 4217 (list one) minor-unit exponents that differ from 2. Codes with no minor unit defined (XAU, XTS,
# ...) count as 2, which only matters for formatting: they are not in a rates table, so never converted.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV"]
        + ["XAF", "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
_CODE = re.compile(r"^[A-Z]{3}$")
STALE_AFTER = timedelta(days=31)  # a rates table older than this is logged as stale at load

_noted: set[tuple[str, str]] = set()


@lru_cache(maxsize=1)
def _unpriced_counter() -> Any:
    # created on first use: ingest's parse workers import this module for `minor_exponent` only
    from prometheus_client import Counter

    return Counter(
        "arrears_fx_unpriced_total",
        "Amounts in a currency the rates table has no rate for (each handled conservatively)",
        ["use", "currency"],
    )


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point of `currency` (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(currency, 2)


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """Minor units -> an exact Decimal amount in units (`12345, "USD"` -> `Decimal("123.45")`)."""
    return Decimal(amount_minor).scaleb(-minor_exponent(currency))


def to_minor(amount: Decimal, currency: str) -> int:
    """An amount in units -> minor units (`Decimal("123.45"), "USD"` -> `12345`); more decimals than the
    currency has, a negative or a non-finite amount is a ValueError (never rounded silently)."""
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount: {amount}")
    minor = amount.scaleb(minor_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(minor)


def format_minor(amount_minor: int, currency: str) -> str:
    """`1234567, "USD"` -> `12,345.67 USD`; `1234, "JPY"` -> `1,234 JPY`; `1234, "KWD"` -> `1.234 KWD`."""
    exp = minor_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole:,}" + (f".{frac:0{exp}d}" if exp else "") + f" {currency}"


def format_amount(amount_minor: int, currency: str | None) -> str:
    """`format_minor` when the currency is known; without one (a promise recorded before currencies were
    kept) the amount with two decimals and no code, exactly (no float rounding of large amounts)."""
    if currency:
        return format_minor(amount_minor, currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 100)
    return f"{sign}{whole:,}.{frac:02d}"


def note_unpriced(currency: str | None, use: str) -> None:
    """Record that an amount in `currency` could not be converted for `use` (log once per process)."""
    cur = currency or "none"
    _unpriced_counter().labels(use=use, currency=cur).inc()
    if (use, cur) not in _noted:
        _noted.add((use, cur))
        log.warning(
            "no FX rate for currency: handled conservatively",
            extra={"currency": cur, "use": use},
        )


@dataclass(frozen=True)
class RateTable:
    """Rates to one reporting currency, valid as of a date. `rates[c]` = units of the reporting currency per
    unit of `c` (Decimal, > 0)."""

    reporting_currency: str
    as_of: date
    rates: Mapping[str, Decimal]
    source: str = field(default="inline", compare=False)
    # currency -> (numerator, denominator): reporting minor = amount_minor * num / den, exactly
    _factors: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rep = self.reporting_currency
        if not _CODE.match(rep):
            raise ValueError(f"reporting_currency must be a 3-letter ISO 4217 code, not {rep!r}")
        factors: dict[str, tuple[int, int]] = {rep: (1, 1)}
        for cur, rate in self.rates.items():
            if not _CODE.match(cur):
                raise ValueError(f"rates: {cur!r} is not a 3-letter ISO 4217 code")
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
                raise ValueError(f"rates.{cur}: must be a positive decimal, not {rate!r}")
            if cur == rep:
                if rate != 1:
                    raise ValueError(f"rates.{cur}: the reporting currency's own rate must be 1")
                continue
            num, den = rate.as_integer_ratio()
            shift = minor_exponent(rep) - minor_exponent(cur)
            if shift >= 0:
                num *= 10**shift
            else:
                den *= 10**-shift
            factors[cur] = (num, den)
        object.__setattr__(self, "_factors", factors)

    def has_rate(self, currency: str | None) -> bool:
        return currency in self._factors

    def to_reporting_minor(self, amount_minor: int, currency: str | None) -> int | None:
        """`amount_minor` of `currency` in minor units of the reporting currency, rounded half away from zero;
        None when there is no rate for `currency` (0 stays 0 whatever the currency)."""
        f = self._factors.get(currency)  # type: ignore[arg-type]
        if f is None:
            return 0 if amount_minor == 0 else None
        num, den = f
        if den == 1:
            return amount_minor * num
        q, r = divmod(abs(amount_minor) * num, den)
        if 2 * r >= den:
            q += 1
        return q if amount_minor >= 0 else -q

    def to_json(self) -> dict[str, Any]:
        return {
            "reporting_currency": self.reporting_currency,
            "as_of": self.as_of.isoformat(),
            "rates": {c: str(r) for c, r in sorted(self.rates.items())},
        }


def parse_rates(data: Mapping[str, Any], source: str = "inline") -> RateTable:
    """`{"reporting_currency": "USD", "as_of": "2026-12-01", "rates": {"EUR": "1.05"}}` -> RateTable."""
    unknown = set(data) - {"reporting_currency", "as_of", "rates", "note"}
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
    try:
        rep = str(data["reporting_currency"])
        as_of = data["as_of"] if isinstance(data["as_of"], date) else date.fromisoformat(str(data["as_of"]))
        raw = data.get("rates") or {}
        if not isinstance(raw, Mapping):
            raise ValueError("rates must be a mapping of currency -> rate")
        rates: dict[str, Decimal] = {}
        for cur, value in raw.items():
            if isinstance(value, float | bool):
                raise ValueError(f"rates.{cur}: write the rate as a string, not {value!r}")
            try:
                rates[str(cur)] = Decimal(str(value))
            except InvalidOperation:
                raise ValueError(f"rates.{cur}: {value!r} is not a decimal number") from None
    except KeyError as e:
        raise ValueError(f"{source}: {e.args[0]} is required") from None
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return RateTable(reporting_currency=rep, as_of=as_of, rates=rates, source=source)


def load_rates(path: str | Path | None = None, today: date | None = None) -> RateTable:
    """The rates file at `path`, or the packaged `data/fx_rates.json`. Logs a warning if it is stale."""
    if path:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    else:
        text = resources.files("arrears_shared").joinpath("data", "fx_rates.json").read_text(encoding="utf-8")
        source = "arrears_shared/data/fx_rates.json"
    table = parse_rates(json.loads(text, parse_float=Decimal), source)
    today = today or datetime.now(UTC).date()
    if today - table.as_of > STALE_AFTER:
        log.warning(
            "FX rates are stale",
            extra={
                "source": source,
                "as_of": table.as_of.isoformat(),
                "age_days": (today - table.as_of).days,
            },
        )
    return table


@lru_cache(maxsize=1)
def packaged_rates() -> RateTable:
    """The packaged default table (loaded once per process)."""
    return load_rates(None)


@lru_cache(maxsize=8)
def rates_from_file(path: str | None) -> RateTable:
    """`load_rates(path)`, cached per path (None = the packaged table)."""
    return packaged_rates() if not path else load_rates(path)


def configured_rates() -> RateTable:
    """The table `ARREARS_FX_RATES_FILE` names (read from the environment), else the packaged one."""
    from .settings import MoneySettings

    return rates_from_file(MoneySettings().fx_rates_file)
