"""Promises carry their currency and, for an instalment offer ("$50 a week"), the plan's period: the amount
is then one instalment and the due date the first payment.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.promises ADD COLUMN currency text,
            ADD COLUMN plan_every text CHECK (plan_every IN ('week', 'fortnight', 'month'))"""
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE {S}.promises DROP COLUMN IF EXISTS currency, DROP COLUMN IF EXISTS plan_every")
