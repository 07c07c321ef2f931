"""console: the audit log of its state-changing API calls (sign-in, API keys, dead-letter replays).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op
from arrears_shared.audit.tables import create_audit_log, drop_audit_log

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "console"


def upgrade() -> None:
    create_audit_log(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log(op, SCHEMA)
