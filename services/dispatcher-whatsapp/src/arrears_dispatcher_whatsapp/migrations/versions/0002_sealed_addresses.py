"""dispatcher-whatsapp: personal data sealed at rest with the account's key (addresses, notices, rendered messages);
invalid addresses found by a blind index (`invalid_channels.address_bidx`). Rows written before keep their
plaintext and are read as they are (no backfill); see arrears_shared.delivery.sealing.

Revision ID: 0002
Revises: 0001
Create Date: 2027-02-01
"""

from alembic import op
from arrears_shared.delivery.tables import downgrade_delivery_tables_v5, upgrade_delivery_tables_v5

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_whatsapp"


def upgrade() -> None:
    upgrade_delivery_tables_v5(op, SCHEMA)


def downgrade() -> None:
    downgrade_delivery_tables_v5(op, SCHEMA)
