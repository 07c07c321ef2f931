"""responses: what a failed SMS event needs. `sent_messages` keeps the notice's fields from `message-sent`
(address, tier, step, campaign, provider, attempts) so a QUO `message.failed` webhook can be published as a
failed `message-sent` for that notice; `delivery_status` keeps QUO's error code and message (a failure that
arrives before its `message-sent` is published when the `message-sent` comes).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "responses"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.sent_messages
            ADD COLUMN address text,
            ADD COLUMN provider text,
            ADD COLUMN tier text,
            ADD COLUMN step integer,
            ADD COLUMN campaign_id text,
            ADD COLUMN attempts integer"""
    )
    op.execute(
        f"""ALTER TABLE {S}.delivery_status
            ADD COLUMN error_code text,
            ADD COLUMN error_message text"""
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE {S}.delivery_status DROP COLUMN error_code, DROP COLUMN error_message")
    op.execute(
        f"""ALTER TABLE {S}.sent_messages DROP COLUMN address, DROP COLUMN provider, DROP COLUMN tier,
            DROP COLUMN step, DROP COLUMN campaign_id, DROP COLUMN attempts"""
    )
