"""A failed SMS learned from QUO's ``message.failed`` webhook, as a `DeliveryFailure` (arrears_shared.inbound)
published as a failed `message-sent` by the channel-generic path (inbound/failures.py).

QUO accepts a message, then the carrier refuses it: the dispatcher has already published `message-sent`
(`sent`) for the notice, so responses publishes a second `message-sent` for the same notice with
``status=failed``, the original notice's fields (tier, step, campaign, address: stored from the first event in
``responses.sent_messages``), ``reason="quo <code>: <message>"`` and ``permanent`` decided from the error code.
Its CloudEvents id is ``sms-failed:<provider message id>`` and it is published at most once per message (the
id is claimed in ``responses.webhook_events``): a redelivered webhook, or the same failure under another event
id, publishes nothing new. A failure that arrives before the dispatcher's `message-sent` is stored on
``responses.delivery_status`` (with its verdict) and published when that `message-sent` is consumed.

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

from datetime import datetime

from arrears_shared.inbound import DeliveryFailure

CHANNEL = "sms"
PROVIDER = "quo"
BAD_NUMBER_CODES: frozenset[str] = frozenset(
    {"21211", "21407", "21408", "21610", "21612", "21614", "30003", "30004", "30005", "30006"}
)


def is_permanent(error_code: str | int | None) -> bool:
    """True if QUO's error code means the number itself cannot take SMS (see the module docstring)."""
    if error_code is None:
        return False
    return str(error_code).strip() in BAD_NUMBER_CODES


def failure_reason(error_code: str | int | None, error_message: str | None) -> str:
    code = str(error_code) if error_code is not None else "?"
    return f"quo {code}: {error_message or 'not delivered'}"[:200]


def quo_failure(
    provider_message_id: str, error_code: str | int | None, error_message: str | None, failed_at: datetime
) -> DeliveryFailure:
    """QUO's `message.failed` of a sent SMS as a delivery failure."""
    return DeliveryFailure(
        channel=CHANNEL,
        provider=PROVIDER,
        provider_message_id=provider_message_id,
        failed_at=failed_at,
        reason=failure_reason(error_code, error_message),
        permanent=is_permanent(error_code),
        error_code=str(error_code) if error_code is not None else None,
    )
