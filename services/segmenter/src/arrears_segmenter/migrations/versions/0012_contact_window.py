"""segmenter: the debtor's own quiet times per account (issue #19, set in the portal through the
`set_channel_preference` override's `contact_window`): not before / not after a local time and weekdays to
avoid, as `ContactWindow` JSON. They only narrow the legal contact window (arrears_segmenter.preferences).
No personal data.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.accounts ADD COLUMN contact_window jsonb")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS contact_window")
