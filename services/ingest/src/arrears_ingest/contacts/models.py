"""Contact facts of one account and how they read in the sheet's cells."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from arrears_shared.money import minor_exponent

from ..settings import ContactFact


@dataclass(frozen=True, slots=True)
class Fold:
    """The newest fact of each kind one batch of events brings for one account (None = none in the batch)."""

    contact_at: datetime | None = None
    contact_channel: str | None = None
    contact_status: str | None = None
    reply_at: datetime | None = None
    reply_channel: str | None = None
    reply_intent: str | None = None
    promise_at: datetime | None = None
    promise_amount_minor: int | None = None
    promise_date: date | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """An account's stored contact facts, as the write-back reads them (`version` = change counter)."""

    account_id: str
    version: int
    contact_at: datetime | None
    contact_channel: str | None
    contact_status: str | None
    reply_at: datetime | None
    reply_channel: str | None
    reply_intent: str | None
    promise_at: datetime | None
    promise_amount_minor: int | None
    promise_currency: str | None
    promise_date: date | None

    def cell(self, fact: ContactFact) -> str:
        """The text of one fact's cell ("" when the fact is unknown). Times are UTC."""
        if fact == "last_contact":
            if self.contact_at is None:
                return ""
            return f"{_when(self.contact_at)}, {self.contact_channel}, {self.contact_status}"
        if fact == "last_reply":
            return "" if self.reply_at is None else f"{_when(self.reply_at)}, {self.reply_channel}"
        if fact == "intent":
            return self.reply_intent or ""
        if self.promise_at is None:
            return ""
        parts = []
        if self.promise_amount_minor is not None:
            parts.append(money(self.promise_amount_minor, self.promise_currency or "USD"))
        if self.promise_date is not None:
            parts.append(f"by {self.promise_date.isoformat()}")
        return " ".join(parts) or "promised (no amount or date)"


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def money(minor: int, currency: str) -> str:
    """`20000, "USD"` -> `200.00 USD` (the currency's own number of decimals)."""
    exp = minor_exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    return f"{value:.{exp}f} {currency}"
