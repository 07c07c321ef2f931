"""The columns of the working-set export (and of the manual tracking sheet the import reads back)."""

from __future__ import annotations

from typing import get_args

from arrears_shared.events import ManualContactChannel, ManualContactDirection, ManualContactOutcome

WORKING_SET = (
    "account_id",
    "name",
    "phone",
    "email",
    "balance",
    "currency",
    "due_date",
    "days_past_due",
    "aging_bucket",
    "status",
    "sms_consent",
    "email_consent",
    "opted_out",
    "do_not_contact",
    "last_payment_date",
    "last_contact_at",
    "last_contact_channel",
    "last_contact_outcome",
    "next_step",
    "next_step_cycle",
    "next_step_tier",
    "next_step_channels",
    "next_step_due_at",
    "hold",
    "hold_until",
    "next_step_note",
)
CONTACT_HISTORY = ("account_id", "at", "kind", "channel", "outcome", "detail")
# escalation's `POST /contacts/import` reads these names back (arrears_escalation.contacts.models.SHEET_COLUMNS)
MANUAL_CONTACTS = (
    "account_id",
    "when",
    "channel",
    "direction",
    "outcome",
    "note",
    "promise_amount",
    "promise_date",
)
CHANNELS: tuple[str, ...] = get_args(ManualContactChannel)
DIRECTIONS: tuple[str, ...] = get_args(ManualContactDirection)
OUTCOMES: tuple[str, ...] = get_args(ManualContactOutcome)

SHEETS = {
    "working-set": "Working set",
    "contact-history": "Contact history",
    "manual-contacts": "Manual contacts",
}
HISTORY_DAYS = 90
