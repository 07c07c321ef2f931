"""escalation: account activity (messages both ways, status changes) for the account timeline.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(f"""
        CREATE TABLE {S}.activity (
            id text PRIMARY KEY,
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            kind text NOT NULL,
            summary text NOT NULL,
            data jsonb NOT NULL DEFAULT '{{}}'::jsonb
        )""")
    op.execute(f"CREATE INDEX activity_account ON {S}.activity (account_id, at)")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.activity")
