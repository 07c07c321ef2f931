"""segmenter: a campaign's collection goal as an amount (seed 004: "Set realistic goals for collection
amounts"): `goal_minor` in minor units of `goal_currency`, beside the free-text `goal`. The console compares
it with what escalation attributes to the campaign (collected vs goal, collection rate).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.campaigns ADD COLUMN goal_minor bigint CHECK (goal_minor >= 0),
            ADD COLUMN goal_currency text CHECK (goal_currency ~ '^[A-Z]{{3}}$'),
            ADD CONSTRAINT campaigns_goal_currency CHECK (goal_minor IS NULL OR goal_currency IS NOT NULL)"""
    )


def downgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.campaigns DROP CONSTRAINT IF EXISTS campaigns_goal_currency,
            DROP COLUMN IF EXISTS goal_minor, DROP COLUMN IF EXISTS goal_currency"""
    )
