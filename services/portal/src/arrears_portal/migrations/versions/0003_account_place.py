"""portal: the account's country and region (from `account-changed`), so a debtor's contact window can be
checked against the jurisdiction's legal window when it is saved (the compliance gate's rules).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "portal"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.accounts ADD COLUMN country text, ADD COLUMN region text")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.accounts DROP COLUMN country, DROP COLUMN region")
