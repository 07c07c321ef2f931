"""responses: people's corrections of a reply's intent (labelled examples for the classifier), and the
audit log of state-changing API calls.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op
from arrears_shared.audit.tables import create_audit_log, drop_audit_log

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "responses"


def upgrade() -> None:
    create_audit_log(op, S)
    op.execute(
        f"""CREATE TABLE {S}.intent_corrections (
            reply_id text PRIMARY KEY,
            account_id text,
            channel text NOT NULL,
            text text NOT NULL,
            predicted_intent text NOT NULL,
            predicted_confidence double precision NOT NULL,
            intent text NOT NULL,
            corrected_by text NOT NULL,
            corrected_at timestamptz NOT NULL
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.intent_corrections")
    drop_audit_log(op, S)
