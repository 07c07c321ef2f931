"""A failed SMS learned after it was sent (QUO's message.failed, published by responses as a second
`message-sent` for the notice, issue #13) reaches the account: a bad number is marked invalid, so the next
steps go by email; a transient failure changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from arrears_segmenter.accounts.projection import FoldContext, apply_message_sent, new_row
from arrears_segmenter.timers.firing import channel_block
from arrears_shared.events import Channel, DeliveryStatus, MessageSent, Tier

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


def sms(status: DeliveryStatus, *, permanent: bool = False, reason: str | None = None) -> MessageSent:
    return MessageSent(
        account_id="A-SMS",
        notice_id="n-1",
        channel=Channel.SMS,
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


def account() -> dict[str, object]:
    return new_row("A-SMS", NOW) | {
        "known": True,
        "phone": "+14155550100",
        "sms_consent": True,
        "email": "a@example.com",
        "email_consent": True,
    }


def test_permanent_failed_sms_after_sent_marks_the_number_invalid() -> None:
    ctx = FoldContext(now=NOW)
    row = account()
    assert apply_message_sent(row, sms(DeliveryStatus.SENT), ctx) == []  # the dispatcher's `sent` first
    assert channel_block(row, Channel.SMS) is None
    out = apply_message_sent(
        row, sms(DeliveryStatus.FAILED, permanent=True, reason="quo 30003: Unreachable"), ctx
    )
    assert row["sms_invalid"] is True and row["email_invalid"] is False
    assert [(d["rule_id"], d["channel"], d["notice_id"]) for d in out] == [
        ("invalid_address.sms", "sms", "n-1")
    ]
    assert out[0]["reason"] == "quo 30003: Unreachable"
    assert channel_block(row, Channel.SMS) == ("invalid_address.sms", "sms address failed permanently")
    assert channel_block(row, Channel.EMAIL) is None  # the next steps can still go by email
    # the same failure delivered again: still invalid, nothing else changes
    apply_message_sent(row, sms(DeliveryStatus.FAILED, permanent=True), ctx)
    assert row["sms_invalid"] is True


def test_transient_failed_sms_leaves_the_number_alone() -> None:
    row = account()
    assert apply_message_sent(row, sms(DeliveryStatus.FAILED, permanent=False), FoldContext(now=NOW)) == []
    assert row["sms_invalid"] is False
