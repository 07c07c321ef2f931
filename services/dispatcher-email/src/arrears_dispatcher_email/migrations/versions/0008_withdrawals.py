"""dispatcher-email: `withdrawals`, the latest moment the segmenter withdrew what this dispatcher holds queued for an
account (`DunningStopped`: a settlement paid, a person's do-not-contact, a dispute, a pause), so a notice queued
before it is suppressed, not sent (arrears_shared.delivery.checks.withdrawn).

Revision ID: 0008
Revises: 0007
Create Date: 2027-04-01
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v7, upgrade_delivery_tables_v7

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_email"


def upgrade() -> None:
    upgrade_delivery_tables_v7(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v7(op, SCHEMA)
