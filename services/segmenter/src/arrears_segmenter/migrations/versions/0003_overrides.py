"""segmenter: manual overrides (pause, channel preference, per-channel do-not-contact, send now, campaign
pause)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(f"""
        ALTER TABLE {S}.accounts
            ADD COLUMN paused_by text,
            ADD COLUMN pause_until timestamptz,
            ADD COLUMN pause_reason text,
            ADD COLUMN channel_preference text,
            ADD COLUMN sms_do_not_contact boolean NOT NULL DEFAULT false,
            ADD COLUMN email_do_not_contact boolean NOT NULL DEFAULT false,
            ADD COLUMN send_now jsonb""")
    op.execute(f"""
        ALTER TABLE {S}.campaigns
            ADD COLUMN paused_by text,
            ADD COLUMN pause_until timestamptz,
            ADD COLUMN pause_reason text""")
    op.execute(f"CREATE INDEX timers_campaign_pause ON {S}.timers (reason) WHERE state = 'pending'")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {S}.timers_campaign_pause")
    op.execute(f"""
        ALTER TABLE {S}.campaigns DROP COLUMN IF EXISTS paused_by, DROP COLUMN IF EXISTS pause_until,
            DROP COLUMN IF EXISTS pause_reason""")
    op.execute(f"""
        ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS paused_by, DROP COLUMN IF EXISTS pause_until,
            DROP COLUMN IF EXISTS pause_reason, DROP COLUMN IF EXISTS channel_preference,
            DROP COLUMN IF EXISTS sms_do_not_contact, DROP COLUMN IF EXISTS email_do_not_contact,
            DROP COLUMN IF EXISTS send_now""")
