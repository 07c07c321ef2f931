"""A failed SMS learned from QUO's ``message.failed`` webhook, published as a failed `message-sent`.

QUO accepts a message, then the carrier refuses it: the dispatcher has already published `message-sent`
(`sent`) for the notice, so responses publishes a second `message-sent` for the same notice with
``status=failed``, the original notice's fields (tier, step, campaign, address: stored from the first event in
``responses.sent_messages``), ``reason="quo <code>: <message>"`` and ``permanent`` decided from the error code.
Its CloudEvents id is ``sms-failed:<provider message id>`` and it is published at most once per message (the
id is claimed in ``responses.webhook_events``): a redelivered webhook, or the same failure under another event
id, publishes nothing new. A failure that arrives before the dispatcher's `message-sent` is stored on
``responses.delivery_status`` and published when that `message-sent` is consumed.

**Which codes mean a bad number** (``permanent=True``: the segmenter marks ``sms_invalid`` and the next steps
go by email; escalation opens a ``delivery_failed`` case). QUO does not publish a list of its own; the
``errorCode`` of a failed message is the carrier/aggregator code in the numbering of Twilio's error
dictionary (https://www.twilio.com/docs/api/errors, the 30xxx "message delivery" and 21xxx "To number"
errors), which is what the mapping follows:

==========  ================================================  ==========
code        meaning                                           permanent
==========  ================================================  ==========
21211       invalid 'To' phone number                         yes
21407       destination not supported for SMS                 yes
21408       region not enabled for the destination            yes
21610       recipient unsubscribed (replied STOP to carrier)  yes
21612       'To' number cannot be reached (not routable)      yes
21614       'To' is not a mobile number                       yes
30003       unreachable destination handset                   yes
30004       message blocked by the recipient                  yes
30005       unknown destination handset (number not in use)   yes
30006       landline or unreachable carrier                   yes
anything    queue overflow (30001), carrier or content        no
else        filtering (30007), unknown error (30008),
            throughput, our account or registration
            (30002, 30032, 30034, ...), or no code at all
==========  ================================================  ==========

30003 is the judgement call: a handset that is off or out of coverage for the whole validity period reports
it too, but a number that stays unreachable for a collections notice is not worth another SMS; a person who
fixes the number clears ``sms_invalid`` (a new phone on `account-changed`). A transient
failure is published too (``permanent=False``): it counts as failed and is shown on the timeline, but
nothing changes the dunning — no resend and no invalid number. dispatcher-sms reads a permanent one too
(`invalid_channels`: later notices to the number fail at once); it never sends a settled notice again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from arrears_shared.events import Channel, DeliveryStatus, MessageSent, Tier
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

log = logging.getLogger(__name__)

BAD_NUMBER_CODES: frozenset[str] = frozenset(
    {"21211", "21407", "21408", "21610", "21612", "21614", "30003", "30004", "30005", "30006"}
)


def is_permanent(error_code: str | int | None) -> bool:
    """True if QUO's error code means the number itself cannot take SMS (see the module docstring)."""
    if error_code is None:
        return False
    return str(error_code).strip() in BAD_NUMBER_CODES


def failure_event_id(provider_message_id: str) -> str:
    return f"sms-failed:{provider_message_id}"


def failure_reason(error_code: str | int | None, error_message: str | None) -> str:
    code = str(error_code) if error_code is not None else "?"
    return f"quo {code}: {error_message or 'not delivered'}"[:200]


async def publish_sms_failure(
    tx: Transaction,
    provider_message_id: str,
    error_code: str | int | None,
    error_message: str | None,
    failed_at: datetime,
) -> bool:
    """Emit the failed `message-sent` of a sent SMS in `tx` (its outbox), once per provider message id.
    False if the message is unknown (its `message-sent` not consumed yet, or stored before the notice's
    fields were kept) or the failure was already published."""
    s = tx.schema
    sent = (
        await tx.conn.execute(
            text(
                f"""SELECT notice_id, account_id, address, provider, tier, step, campaign_id, attempts
                FROM {s}.sent_messages WHERE provider_message_id = :p AND channel = 'sms'"""
            ),
            {"p": provider_message_id},
        )
    ).first()
    if sent is None or sent.tier is None or sent.address is None:
        return False
    if failed_at.tzinfo is None:
        failed_at = failed_at.replace(tzinfo=UTC)
    eid = failure_event_id(provider_message_id)
    claimed = await tx.conn.execute(
        text(
            f"INSERT INTO {s}.webhook_events (id, provider, type) VALUES (:id, 'quo', 'sms-failed') "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {"id": eid},
    )
    if claimed.first() is None:
        return False
    permanent = is_permanent(error_code)
    tx.emit(
        MessageSent(
            account_id=sent.account_id,
            notice_id=sent.notice_id,
            channel=Channel.SMS,
            status=DeliveryStatus.FAILED,
            provider=sent.provider or "quo",
            provider_message_id=provider_message_id,
            to=sent.address,
            tier=Tier(sent.tier),
            step=sent.step,
            campaign_id=sent.campaign_id,
            reason=failure_reason(error_code, error_message),
            permanent=permanent,
            attempts=sent.attempts or 1,
            sent_at=failed_at,
        ),
        id=eid,
    )
    log.info(
        "failed SMS published",
        extra={
            "provider_message_id": provider_message_id,
            "notice_id": sent.notice_id,
            "permanent": permanent,
        },
    )
    return True
