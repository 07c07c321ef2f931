"""dispatcher-sms: `account_stops`, where each account's dunning was stopped at its source (paid, closed, removed), so
a queued notice planned before the stop is suppressed, not sent (arrears_shared.delivery.checks.stopped).

Revision ID: 0006
Revises: 0005
Create Date: 2027-03-01
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v6, upgrade_delivery_tables_v6

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_sms"


def upgrade() -> None:
    upgrade_delivery_tables_v6(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v6(op, SCHEMA)
