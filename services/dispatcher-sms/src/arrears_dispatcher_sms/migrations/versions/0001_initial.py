"""dispatcher-sms: runner tables + delivery state machine, opt-outs, shared rate limiter.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables
from arrears_shared.delivery.tables import create_delivery_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_sms"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    create_delivery_tables(op, SCHEMA)


def downgrade() -> None:
    for table in ("rate_limiter", "opt_outs", "deliveries", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
