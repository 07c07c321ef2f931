"""responses: the Gmail push subscription (users.watch) per mailbox, renewed daily by one replica.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "responses"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {SCHEMA}.gmail_watch (
            mailbox text PRIMARY KEY,
            topic text,
            history_id bigint,
            expires_at timestamptz,
            renewed_at timestamptz,
            next_renewal_at timestamptz NOT NULL DEFAULT '-infinity',
            renewals integer NOT NULL DEFAULT 0,
            last_error text
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.gmail_watch")
