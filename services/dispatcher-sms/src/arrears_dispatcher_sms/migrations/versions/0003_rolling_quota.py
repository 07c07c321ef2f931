"""dispatcher-sms: daily quota over a rolling 24 hours, route pauses shared by all replicas.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-20
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v3, upgrade_delivery_tables_v3

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_sms"


def upgrade() -> None:
    upgrade_delivery_tables_v3(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v3(op, SCHEMA)
