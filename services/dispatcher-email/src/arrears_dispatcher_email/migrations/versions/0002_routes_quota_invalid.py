"""dispatcher-email: send route, DLQ id, invalid channels per account, daily quota usage.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v2, upgrade_delivery_tables_v2

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_email"


def upgrade() -> None:
    upgrade_delivery_tables_v2(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v2(op, SCHEMA)
