"""The history the models learn from, as columns: one numpy array per field of each kind of row.

The scoring service folds what it consumes into its own tables (`history/handlers.py`), `history/store.py`
loads them into a `History`, and the simulator (`simulate.py`) produces the very same `History` for the demo
and the benchmark, so the feature pipeline, the models and the scoring code never know which they read.

Time is a float: days since 1970-01-01 UTC (`day_of`), so "before the prediction day D" is `t < D`. Codes:
channels, tiers, intents and override actions are small integers (the tables below), unknown ones `-1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt

EPOCH = date(1970, 1, 1)
F = npt.NDArray[np.float64]
I = npt.NDArray[np.int64]  # noqa: E741
B = npt.NDArray[np.bool_]

CHANNELS: tuple[str, ...] = ("sms", "email", "whatsapp")
TIERS: tuple[str, ...] = ("reminder", "firm", "final")
INTENTS: tuple[str, ...] = (
    "opt_out",
    "help",
    "paid_claim",
    "promise_to_pay",
    "dispute",
    "wrong_number",
    "callback_request",
    "hardship",
    "other",
)
OVERRIDE_ACTIONS: tuple[str, ...] = ("do_not_contact", "mark_dispute", "record_promise", "record_contact")


def code(table: tuple[str, ...], value: str | None) -> int:
    return table.index(value) if value in table else -1


def day_of(d: date) -> int:
    """The day number of a date (days since 1970-01-01)."""
    return (d - EPOCH).days


def t_of(at: datetime) -> float:
    """A timestamp as a float day number (UTC)."""
    return at.astimezone(UTC).timestamp() / 86400.0


def _f(n: int = 0) -> F:
    return np.zeros(n, dtype=np.float64)


def _i(n: int = 0) -> I:
    return np.zeros(n, dtype=np.int64)


def _b(n: int = 0) -> B:
    return np.zeros(n, dtype=np.bool_)


@dataclass
class Snapshots:
    """The account's state each time it changed at its source (`account-changed`)."""

    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)
    balance: F = field(default_factory=_f)  # minor units
    due_day: I = field(default_factory=_i)
    open: B = field(default_factory=_b)  # not paid, closed or removed
    consent: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, len(CHANNELS)), bool))


@dataclass
class Messages:
    """Dunning messages sent (`message-sent`, status sent), with the local hour they arrived at."""

    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)
    channel: I = field(default_factory=_i)
    hour: I = field(default_factory=_i)  # debtor's local hour 0-23
    tier: I = field(default_factory=_i)


@dataclass
class Replies:
    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)
    channel: I = field(default_factory=_i)
    intent: I = field(default_factory=_i)
    promise_day: F = field(default_factory=_f)  # NaN without a promise date


@dataclass
class Payments:
    """Money received: a balance that went down at the source, or a `payment` change."""

    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)
    amount: F = field(default_factory=_f)  # minor units


@dataclass
class Overrides:
    """People's actions on the account that matter to the models (do-not-contact, dispute, a promise taken by
    phone, a contact made outside the platform)."""

    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)
    action: I = field(default_factory=_i)
    promise_day: F = field(default_factory=_f)


@dataclass
class Clicks:
    """First opens of a notice's payment link (`link-clicked`)."""

    acc: I = field(default_factory=_i)
    t: F = field(default_factory=_f)


@dataclass
class History:
    """Every row the pipeline reads, for the accounts `accounts` (row `acc` indexes this list)."""

    accounts: list[str]
    currency: list[str]
    snapshots: Snapshots
    messages: Messages
    replies: Replies
    payments: Payments
    overrides: Overrides
    clicks: Clicks

    @property
    def n(self) -> int:
        return len(self.accounts)

    def end(self) -> float:
        """The time of the latest row (the history's horizon)."""
        ts = [
            x.t.max()
            for x in (self.snapshots, self.messages, self.replies, self.payments, self.overrides, self.clicks)
            if len(x.t)
        ]
        return float(max(ts)) if ts else 0.0

    def start(self) -> float:
        return float(self.snapshots.t.min()) if len(self.snapshots.t) else 0.0
