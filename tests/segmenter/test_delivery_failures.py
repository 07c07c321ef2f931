"""A failed SMS learned after it was sent (QUO's message.failed, published by responses as a second
`message-sent` for the notice, issue #13) reaches the account: a bad number is marked invalid, so the next
steps go by email; a transient failure changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from arrears_segmenter.accounts.account import Account
from arrears_segmenter.accounts.projection import FoldContext, apply_message_sent
from arrears_segmenter.timers.firing import channel_block
from arrears_shared.events import DeliveryStatus, MessageSent, Tier

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


def sms(status: DeliveryStatus, *, permanent: bool = False, reason: str | None = None) -> MessageSent:
    return MessageSent(
        account_id="A-SMS",
        notice_id="n-1",
        channel="sms",
        status=status,
        provider="quo",
        provider_message_id="AC123",
        to="+14155550100",
        tier=Tier.REMINDER,
        step=1,
        reason=reason,
        permanent=permanent,
        sent_at=NOW,
    )


def account() -> Account:
    acct = replace(Account.new("A-SMS", NOW), known=True)
    acct.set_contact("sms", "+14155550100", True)
    acct.set_contact("email", "a@example.com", True)
    return acct


def test_permanent_failed_sms_after_sent_marks_the_number_invalid() -> None:
    ctx = FoldContext(now=NOW)
    row = account()
    assert apply_message_sent(row, sms(DeliveryStatus.SENT), ctx) == []  # the dispatcher's `sent` first
    assert channel_block(row, "sms") is None
    out = apply_message_sent(
        row, sms(DeliveryStatus.FAILED, permanent=True, reason="quo 30003: Unreachable"), ctx
    )
    assert row.address_invalid("sms") is True and row.address_invalid("email") is False
    assert [(d["rule_id"], d["channel"], d["notice_id"]) for d in out] == [
        ("invalid_address.sms", "sms", "n-1")
    ]
    assert out[0]["reason"] == "quo 30003: Unreachable"
    assert channel_block(row, "sms") == ("invalid_address.sms", "sms address failed permanently")
    assert channel_block(row, "email") is None  # the next steps can still go by email
    # the same failure delivered again: still invalid, nothing else changes
    apply_message_sent(row, sms(DeliveryStatus.FAILED, permanent=True), ctx)
    assert row.address_invalid("sms") is True


def test_transient_failed_sms_leaves_the_number_alone() -> None:
    row = account()
    assert apply_message_sent(row, sms(DeliveryStatus.FAILED, permanent=False), FoldContext(now=NOW)) == []
    assert row.address_invalid("sms") is False
