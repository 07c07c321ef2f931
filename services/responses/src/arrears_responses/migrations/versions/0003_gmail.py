"""responses: Gmail cursor, sent emails (for matching by thread / References), reply kind.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "responses"


def upgrade() -> None:
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.gmail_cursor (
            mailbox text PRIMARY KEY,
            history_id bigint NOT NULL,
            full_syncs integer NOT NULL DEFAULT 0,
            last_full_sync_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    # every email notice we sent: its Message-ID hash (References / In-Reply-To) and Gmail thread id
    op.execute(
        f"""CREATE TABLE {s}.email_sent (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            address text NOT NULL,
            msgid_hash text NOT NULL,
            thread_id text,
            tier text NOT NULL,
            step integer NOT NULL,
            campaign_id text,
            sent_at timestamptz NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX email_sent_hash ON {s}.email_sent (msgid_hash)")
    op.execute(f"CREATE INDEX email_sent_thread ON {s}.email_sent (thread_id)")
    op.execute(f"ALTER TABLE {s}.replies ADD COLUMN kind text NOT NULL DEFAULT 'reply'")
    op.execute(f"ALTER TABLE {s}.replies ADD COLUMN matched_by text")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.replies DROP COLUMN kind, DROP COLUMN matched_by")
    op.execute(f"DROP TABLE {SCHEMA}.email_sent")
    op.execute(f"DROP TABLE {SCHEMA}.gmail_cursor")
