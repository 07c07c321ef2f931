"""The typed account: one row of `segmenter.accounts`, built once when it is read and passed around as is.

A plain dataclass with slots, not a pydantic model: the projection folds 100,000 events a batch run and the
timer loop fires 500 timers a tick, and a row read from our own table needs no validation. It is mutable on
purpose: the event fold, the overrides and the timer code change the loaded account in place and the caller
writes it back once (`accounts.store.save`, which hands the dataclasses to the JSON encoder).

Its personal fields (the name, the addresses, a pause's reason) hold plaintext in memory: they are opened
when the rows are read and sealed when they are written (`arrears_segmenter.sealing`).

Its fields are the table's columns in table order (checked below), so a row of `select(accounts)` builds it
positionally (`Account(*row)`), the fastest way there is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any, TypedDict

from arrears_shared.events import AccountStatus

from ..aging import local_midnight
from .models import account_channels, accounts

CLOSED_STATUSES = {AccountStatus.PAID.value, AccountStatus.CLOSED.value}


class SendNow(TypedDict):
    """A step a person made due now (`send_now` / `resume_dunning` override), until it has fired."""

    step: int
    cycle: int
    at: str  # ISO 8601: when it was made due
    actor: str
    reason: str
    gate_override: bool  # a supervisor lifted the gate's time and frequency rules for it
    approved: bool  # a supervisor's send-now is also the step's approval


@dataclass(slots=True)
class Account:
    """One account of the projection: its sheet facts, contact state, holds, dunning progress and segment."""

    account_id: str
    known: bool  # False: a placeholder (a reply or a send arrived before the sheet row); never dunned
    change: str | None
    source: str | None
    source_row: int | None
    customer_name: str
    balance_minor: int
    currency: str | None  # None until the account is known from the sheet
    due_date: date | None
    last_payment_date: date | None
    last_payment_minor: int | None
    timezone: str | None
    timezone_unknown: bool
    country: str | None
    region: str | None
    status: str  # effective: the sheet's status unless a hold (dispute, promise) overrides it
    source_status: str  # as the sheet says
    hold: str | None  # "dispute" | "promise" | None
    removed: bool
    content_hash: str | None
    as_of: datetime | None
    do_not_contact: bool
    promise_hold_until: date | None  # promised day (debtor's calendar): reminders wait until the day after
    promise_amount_minor: int | None
    cycle: int
    cycle_due_date: date | None
    last_step: int
    last_step_at: datetime | None
    days_past_due: int
    aging_bucket: str
    first_seen_at: datetime
    last_event_at: datetime
    complex: bool
    risk_score: int
    risk_override: int | None
    partial_payments: int
    broken_promises: int
    balance_band: str
    history: str
    segment: str
    paused_by: str | None  # who paused the account by hand (pause / snooze override); None: not paused
    manual_pause_until: datetime | None  # end of that pause; None while paused: until resumed
    pause_reason: str | None
    channel_preference: str | None  # "email,sms": channels in the order a person set
    send_now: SendNow | None
    # the debtor's quiet times as stored (`ContactWindow` JSON; see preferences/): None = none
    contact_window: dict[str, object] | None = None
    # the instalment plan behind a promise hold (accounts/terms.py): None = none or a one-off promise
    promise_plan: dict[str, Any] | None = None
    # an accepted settlement offer and what was paid toward it (accounts/terms.py); settled: stop for good
    settlement: dict[str, Any] | None = None
    # not a column: the account's rows of `segmenter.account_channels`, by channel name
    channels: dict[str, ChannelState] = field(default_factory=dict)
    # not a column: the account's key was destroyed (`arrears erase`): it has no address on any channel
    erased: bool = False

    @classmethod
    def new(cls, account_id: str, now: datetime) -> Account:
        """A placeholder (a reply can arrive before the account): unknown, never dunned."""
        return cls(
            account_id=account_id,
            known=False,
            change=None,
            source=None,
            source_row=None,
            customer_name="",
            balance_minor=0,
            currency=None,  # set by the first account-changed
            due_date=None,
            last_payment_date=None,
            last_payment_minor=None,
            timezone=None,
            timezone_unknown=True,
            country=None,
            region=None,
            status="open",
            source_status="open",
            hold=None,
            removed=False,
            content_hash=None,
            as_of=None,
            do_not_contact=False,
            promise_hold_until=None,
            promise_amount_minor=None,
            cycle=0,
            cycle_due_date=None,
            last_step=0,
            last_step_at=None,
            days_past_due=0,
            aging_bucket="current",
            first_seen_at=now,
            last_event_at=now,
            complex=False,
            risk_score=0,
            risk_override=None,
            partial_payments=0,
            broken_promises=0,
            balance_band="low",
            history="clean",
            segment="",
            paused_by=None,
            manual_pause_until=None,
            pause_reason=None,
            channel_preference=None,
            send_now=None,
        )

    def settled(self) -> bool:
        return bool(self.removed or self.balance_minor <= 0 or self.source_status in CLOSED_STATUSES)

    def promise_resume_at(self) -> datetime | None:
        """First instant after a promise's day (local midnight of the next day), if a promise hold is on."""
        if self.hold == "promise" and self.promise_hold_until is not None:
            until = self.promise_hold_until
            if self.promise_plan is not None:  # a plan holds until its last instalment day
                until = max(until, date.fromisoformat(self.promise_plan["last"]))
            return local_midnight(until + timedelta(days=1), self.timezone)
        return None

    def timed_pause_end(self) -> datetime | None:
        """End of a person's timed pause still on the account (None: no timed pause). An open-ended pause is
        a stop condition instead (`manual_pause`, see schedule.planner.stop_reason)."""
        if self.paused_by is not None and self.manual_pause_until is not None:
            return self.manual_pause_until
        return None

    def end_manual_pause(self) -> None:
        self.paused_by = self.manual_pause_until = self.pause_reason = None

    def preferred_channels(self) -> list[str]:
        """Channels in the order a person set (`set_channel_preference`); empty = the policy step's own."""
        return [c for c in (self.channel_preference or "").split(",") if c]

    def pending_send_now(self, step: int | None = None, cycle: int | None = None) -> SendNow | None:
        """The `send_now` override of the current cycle not yet fired (optionally: for that step), if any."""
        so = self.send_now
        if not so or so["cycle"] != self.cycle or so["step"] <= self.last_step:
            return None
        if step is not None and (so["step"], so["cycle"]) != (step, cycle):
            return None
        return so

    # -- per channel (any channel of the registry) --

    def channel(self, name: str) -> ChannelState:
        """The account's state on channel `name` (created empty on first use)."""
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = ChannelState()
        return state

    def address(self, channel: str) -> str | None:
        """Where to send on `channel` (None: nowhere; always None for an erased account)."""
        state = self.channels.get(channel)
        return state.address if state and not self.erased else None

    def consented(self, channel: str) -> bool:
        state = self.channels.get(channel)
        return bool(state and state.consent)

    def opted_out(self, channel: str) -> bool:
        state = self.channels.get(channel)
        return bool(state and state.opted_out)

    def address_invalid(self, channel: str) -> bool:
        state = self.channels.get(channel)
        return bool(state and state.invalid)

    def channel_stopped(self, channel: str) -> bool:
        """A person stopped contact on this channel (per-channel do-not-contact)."""
        state = self.channels.get(channel)
        return bool(state and state.stopped)

    def reachable_channels(self) -> list[str]:
        """Channels with an address that nobody stopped and the customer did not opt out of."""
        return [n for n, s in self.channels.items() if self.address(n) and not (s.opted_out or s.stopped)]

    def mark_opted_out(self, channel: str) -> None:
        self.channel(channel).opted_out = True

    def mark_address_invalid(self, channel: str) -> None:
        self.channel(channel).invalid = True

    def stop_channel(self, channel: str) -> None:
        self.channel(channel).stopped = True

    def set_contact(self, channel: str, address: str | None, consent: bool) -> None:
        """The source's address and consent for `channel`; a changed address is no longer known invalid."""
        state = self.channel(channel)
        if state.address != address:
            state.invalid = False
        state.address, state.consent = address, consent


@dataclass(slots=True)
class ChannelState:
    """One row of `segmenter.account_channels` (without its key)."""

    address: str | None = None
    consent: bool = False
    opted_out: bool = False
    invalid: bool = False
    stopped: bool = False


NOT_COLUMNS = ("channels", "erased")
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Account) if f.name not in NOT_COLUMNS)
CHANNEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ChannelState))

if FIELDS != tuple(c.name for c in accounts.columns):  # positional construction relies on it
    raise RuntimeError("Account fields must be the columns of segmenter.accounts, in table order")
if ("account_id", "channel", *CHANNEL_FIELDS) != tuple(c.name for c in account_channels.columns):
    raise RuntimeError("ChannelState fields must be the columns of segmenter.account_channels, in order")
