"""ingest: the hash-chained audit log of its state-changing API calls (who, role, what, before / after).

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

SCHEMA = "ingest"


def upgrade() -> None:
    create_audit_log(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log(op, SCHEMA)
