"""dispatcher-email: personal data sealed at rest with the account's key (addresses, notices, rendered messages);
invalid addresses found by a blind index (`invalid_channels.address_bidx`). Rows written before keep their
plaintext and are read as they are (no backfill); see arrears_shared.delivery.sealing.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-01
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v5, upgrade_delivery_tables_v5

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_email"


def upgrade() -> None:
    upgrade_delivery_tables_v5(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v5(op, SCHEMA)
