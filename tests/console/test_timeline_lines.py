"""The console timeline's one-line summaries of promises, plans and settlement offers (no personal data)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from arrears_console.readmodels.handlers import summarize
from arrears_shared.events import OverrideRequested, SettlementOfferChanged

AT = datetime(2026, 12, 5, 10, tzinfo=UTC)


def promise(**fields: object) -> OverrideRequested:
    return OverrideRequested.model_validate(
        {
            "account_id": "A-1",
            "override_id": "o-1",
            "action": "record_promise",
            "promise_date": date(2026, 12, 15),
            "promise_amount_minor": 2500,
            "actor": "portal:debtor:v1",
            "role": "system",
            "requested_at": AT,
            **fields,
        }
    )


def test_a_promise_a_plan_and_an_accepted_offer_each_read_as_what_they_are() -> None:
    assert summarize(promise()) == "promise to pay by 2026-12-15 (portal:debtor:v1, system)"
    assert summarize(promise(promise_plan_every="month", plan_instalments=4)) == (
        "instalment plan: 4 payments every month from 2026-12-15 (portal:debtor:v1, system)"
    )
    assert summarize(promise(settlement_offer_id="off-9")) == (
        "settlement offer off-9 accepted: pay by 2026-12-15 (portal:debtor:v1, system)"
    )


def test_a_settlement_offer_reads_with_its_amounts_in_the_accounts_currency() -> None:
    ev = SettlementOfferChanged(
        account_id="A-1",
        offer_id="off-9",
        status="offered",
        amount_minor=8000,
        currency="JPY",
        balance_minor=12345,
        expires_on=date(2026, 12, 15),
        actor="sup",
        role="supervisor",
        changed_at=AT,
    )
    line = summarize(ev)
    assert line.startswith("settlement offer off-9 offered: ") and "by 2026-12-15, sup (supervisor)" in line
    assert "8,000" in line and "12,345" in line  # yen have no minor unit


def test_a_settlement_stop_reads_as_one_and_is_not_counted_as_a_notice_due() -> None:
    from arrears_console.readmodels.handlers import counter_dims
    from arrears_shared.events import DunningStopped

    ev = DunningStopped(account_id="A-1", reason="settled", account_as_of=AT, stopped_at=AT)
    assert summarize(ev) == (
        "queued notices withdrawn: the accepted settlement is paid in full (the rest is written off)"
    )
    assert counter_dims(ev) == ["stopped:settled"]  # the notice-due total ("") counts notices only
    sms = DunningStopped(
        account_id="A-1", reason="do_not_contact", channels=["sms"], account_as_of=AT, stopped_at=AT
    )
    assert summarize(sms) == "queued notices withdrawn (SMS): do-not-contact"
    dispute = DunningStopped(account_id="A-1", reason="dispute", account_as_of=AT, stopped_at=AT)
    assert summarize(dispute) == "queued notices withdrawn: held as disputed"
