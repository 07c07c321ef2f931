"""Segments: balance band, aging bucket, payment history and a risk score (pure functions).

The risk score (0-100, higher = riskier) is a transparent sum, so an operator can explain it:
  aging      up to 40  (days past due / 3, capped)
  balance    up to 20  (by balance band)
  history    up to 40  (15 per broken promise, 5 per partial payment, capped)
An operator may pin a score (`risk_override`), which then wins. Bands: low < 34 <= medium < 67 <= high.

Balance bands are in minor units of the reporting currency (`arrears_shared.money`): the caller converts the
balance first. A balance in a currency without a rate (None) is put in the top band, `very_high`, so it gets
more attention rather than less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# reporting-currency minor units: 100.00, 1,000.00, 10,000.00
DEFAULT_BALANCE_BANDS: tuple[int, ...] = (10_000, 100_000, 1_000_000)
BAND_NAMES = ("low", "medium", "high", "very_high")


@dataclass(frozen=True)
class Segment:
    balance_band: str
    history: str
    risk_score: int
    risk_band: str

    def label(self, aging_bucket: str) -> str:
        return f"{self.balance_band}|{aging_bucket}|{self.history}|risk-{self.risk_band}"


def balance_band(reporting_minor: int | None, bands: Sequence[int] = DEFAULT_BALANCE_BANDS) -> str:
    """Band of a balance already converted to the reporting currency; None (no rate): the top band."""
    if reporting_minor is None:
        return BAND_NAMES[min(len(bands), len(BAND_NAMES) - 1)]
    for bound, name in zip(bands, BAND_NAMES, strict=False):
        if reporting_minor < bound:
            return name
    return BAND_NAMES[min(len(bands), len(BAND_NAMES) - 1)]


def history(partial_payments: int, broken_promises: int) -> str:
    if broken_promises:
        return "broken_promise"
    if partial_payments:
        return "partial_payer"
    return "clean"


def risk_score(dpd: int, band: str, partial_payments: int, broken_promises: int) -> int:
    aging = min(40, max(0, dpd) // 3)
    balance = {"low": 0, "medium": 7, "high": 14, "very_high": 20}[band]
    hist = min(40, 15 * broken_promises + 5 * partial_payments)
    return min(100, aging + balance + hist)


def risk_band(score: int) -> str:
    return "low" if score < 34 else "medium" if score < 67 else "high"


def segment_of(
    *,
    reporting_minor: int | None,
    dpd: int,
    partial_payments: int,
    broken_promises: int,
    risk_override: int | None = None,
    bands: Sequence[int] = DEFAULT_BALANCE_BANDS,
) -> Segment:
    band = balance_band(reporting_minor, bands)
    score = (
        risk_override
        if risk_override is not None
        else risk_score(dpd, band, partial_payments, broken_promises)
    )
    return Segment(band, history(partial_payments, broken_promises), score, risk_band(score))


def parse_bands(raw: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in raw.split(",") if p.strip())
    if len(parts) != 3 or list(parts) != sorted(set(parts)) or parts[0] < 1:
        raise ValueError(
            "balance bands must be three increasing amounts in minor units of the reporting currency, "
            "e.g. 10000,100000,1000000"
        )
    return parts
