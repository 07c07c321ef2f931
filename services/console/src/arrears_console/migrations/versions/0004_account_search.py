"""console: search accounts by phone and email, and the campaign of each account's latest notice.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "console"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.accounts ADD COLUMN phone text, ADD COLUMN email text, ADD COLUMN campaign_id text"
    )
    op.execute(f"CREATE INDEX accounts_campaign ON {S}.accounts (campaign_id) WHERE campaign_id IS NOT NULL")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {S}.accounts_campaign")
    op.execute(
        f"ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS phone, DROP COLUMN IF EXISTS email, "
        "DROP COLUMN IF EXISTS campaign_id"
    )
