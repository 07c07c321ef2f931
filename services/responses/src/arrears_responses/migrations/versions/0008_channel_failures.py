"""responses: delivery failures of any channel. `delivery_status` keeps the channel and provider of the
status and, for a failure, the verdict its adapter gave (`permanent`, `reason`), so a failure that arrives
before its `message-sent` is published with it when that `message-sent` comes. Every row so far came from
QUO (SMS): backfilled with QUO's verdict (the carrier codes of webhooks/failures.py at this revision).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

S = "responses"
QUO_BAD_NUMBER_CODES = (
    "21211",
    "21407",
    "21408",
    "21610",
    "21612",
    "21614",
    "30003",
    "30004",
    "30005",
    "30006",
)


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.delivery_status
            ADD COLUMN channel text,
            ADD COLUMN provider text,
            ADD COLUMN permanent boolean,
            ADD COLUMN reason text"""
    )
    codes = ", ".join(f"'{c}'" for c in QUO_BAD_NUMBER_CODES)
    op.execute(f"UPDATE {S}.delivery_status SET channel = 'sms', provider = 'quo'")
    op.execute(
        f"""UPDATE {S}.delivery_status
            SET permanent = coalesce(trim(error_code) IN ({codes}), false),
                reason = left('quo ' || coalesce(error_code, '?') || ': '
                              || coalesce(nullif(error_message, ''), 'not delivered'), 200)
            WHERE status = 'failed'"""
    )


def downgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.delivery_status DROP COLUMN channel, DROP COLUMN provider, DROP COLUMN permanent,
            DROP COLUMN reason"""
    )
