"""segmenter: an account known only from a reply or a send (no sheet row yet) has no currency: NULL
instead of the 'XXX' default of 0001

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.accounts ALTER COLUMN currency DROP DEFAULT, ALTER COLUMN currency DROP NOT NULL"
    )
    op.execute(f"UPDATE {S}.accounts SET currency = NULL WHERE NOT known")


def downgrade() -> None:
    op.execute(f"UPDATE {S}.accounts SET currency = '' WHERE currency IS NULL")
    op.execute(f"ALTER TABLE {S}.accounts ALTER COLUMN currency SET NOT NULL")
