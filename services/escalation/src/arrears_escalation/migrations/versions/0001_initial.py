"""escalation initial schema: cases and no-response timers

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    create_runner_tables(op, S)
    op.execute(f"""
        CREATE TABLE {S}.cases (
            case_id text PRIMARY KEY,
            account_id text NOT NULL,
            reason text NOT NULL,
            priority text NOT NULL,
            status text NOT NULL CHECK (status IN ('open', 'closed')),
            opened_at timestamptz NOT NULL,
            closed_at timestamptz,
            close_note text,
            detail text NOT NULL DEFAULT '',
            trigger_id text NOT NULL
        )""")
    op.execute(f"CREATE UNIQUE INDEX cases_one_open ON {S}.cases (account_id, reason) WHERE status = 'open'")
    op.execute(f"CREATE INDEX cases_status ON {S}.cases (status, opened_at)")
    op.execute(f"""
        CREATE TABLE {S}.timers (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            kind text NOT NULL,
            trigger_id text NOT NULL,
            due_at timestamptz NOT NULL,
            state text NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled')),
            reason text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            UNIQUE (account_id, kind, trigger_id)
        )""")
    op.execute(f"CREATE INDEX timers_due ON {S}.timers (due_at) WHERE state = 'pending'")


def downgrade() -> None:
    for t in ("timers", "cases", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {S}.{t}")
