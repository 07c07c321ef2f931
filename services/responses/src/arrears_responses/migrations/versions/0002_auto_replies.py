"""responses: automatic answers (HELP text, the one opt-out confirmation per number).

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "responses"


def upgrade() -> None:
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.auto_replies (
            notice_id text PRIMARY KEY,
            reply_id text NOT NULL,
            purpose text NOT NULL CHECK (purpose IN ('opt_out_confirmation', 'help')),
            channel text NOT NULL,
            address text NOT NULL,
            account_id text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    # one opt-out confirmation per number, ever: a second STOP is not confirmed again
    op.execute(
        f"""CREATE UNIQUE INDEX auto_replies_one_confirmation ON {s}.auto_replies (channel, address)
            WHERE purpose = 'opt_out_confirmation'"""
    )
    op.execute(
        f"CREATE INDEX auto_replies_recent ON {s}.auto_replies (channel, address, purpose, created_at)"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE {SCHEMA}.auto_replies")
