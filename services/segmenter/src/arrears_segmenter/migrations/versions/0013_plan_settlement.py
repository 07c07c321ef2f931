"""segmenter: what stands behind a promise hold (issue #19 follow-through): the debtor's instalment plan
(`promise_plan`: cadence, count, first and last day; the hold lasts until the last day and a payment does
not end it) and an accepted settlement offer (`settlement`: offer id, amount, pay-by day, accepted_at and
what was paid toward it since; paid in full, the account stops for good: stop reason `settled`). JSON, no
personal data.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.accounts ADD COLUMN promise_plan jsonb, ADD COLUMN settlement jsonb")


def downgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS promise_plan, DROP COLUMN IF EXISTS settlement"
    )
