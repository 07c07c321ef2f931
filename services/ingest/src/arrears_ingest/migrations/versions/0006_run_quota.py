"""ingest: a run records how long it waited out the Sheets quota (429s) and whether the source was degraded
during it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {SCHEMA}.runs
            ADD COLUMN quota_waited_s double precision NOT NULL DEFAULT 0,
            ADD COLUMN degraded boolean NOT NULL DEFAULT false"""
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.runs DROP COLUMN quota_waited_s, DROP COLUMN degraded")
