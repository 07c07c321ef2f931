"""escalation: a portal plan is followed instalment by instalment, and a paid settlement is known (issue
#19 review). On `promises`: the plan's number of instalments and which one a row is (`instalment`, 1-based;
a kept instalment rolls the promise to the next one, `<first id>#<n>`), the settlement offer a promise
accepts, and `paid_through`: the `as_of` of the last payment counted toward the promise (payments add up,
each once, so a replay counts nothing twice). No personal data.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.promises ADD COLUMN plan_instalments integer CHECK (plan_instalments >= 1),
            ADD COLUMN instalment integer CHECK (instalment >= 1),
            ADD COLUMN settlement_offer_id text,
            ADD COLUMN paid_through timestamptz"""
    )


def downgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.promises DROP COLUMN IF EXISTS plan_instalments,
            DROP COLUMN IF EXISTS instalment, DROP COLUMN IF EXISTS settlement_offer_id,
            DROP COLUMN IF EXISTS paid_through"""
    )
