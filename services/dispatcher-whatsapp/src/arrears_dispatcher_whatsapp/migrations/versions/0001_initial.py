"""dispatcher-whatsapp: runner tables and every delivery table a dispatcher owns, in one revision.

A new dispatcher starts where dispatcher-sms is after its 0001..0004: inbox/outbox, deliveries (with route
and DLQ id), opt-outs, the shared rate limiter, invalid channels, quota usage, the rolling quota window,
route pauses and fail-safe contact holds.

Revision ID: 0001
Revises:
Create Date: 2027-01-15
"""

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables
from arrears_shared.delivery.tables import (
    create_delivery_tables,
    downgrade_delivery_tables_v2,
    downgrade_delivery_tables_v3,
    downgrade_delivery_tables_v4,
    upgrade_delivery_tables_v2,
    upgrade_delivery_tables_v3,
    upgrade_delivery_tables_v4,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_whatsapp"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    create_delivery_tables(op, SCHEMA)
    upgrade_delivery_tables_v2(op, SCHEMA)
    upgrade_delivery_tables_v3(op, SCHEMA)
    upgrade_delivery_tables_v4(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v4(op, SCHEMA)
    downgrade_delivery_tables_v3(op, SCHEMA)
    downgrade_delivery_tables_v2(op, SCHEMA)
    for table in ("rate_limiter", "opt_outs", "deliveries", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
