"""dispatcher-sms: fail-safe holds (a possible opt-out pauses dunning to the account until a person decides).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v4, upgrade_delivery_tables_v4

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_sms"


def upgrade() -> None:
    upgrade_delivery_tables_v4(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v4(op, SCHEMA)
