"""dispatcher-email: the sending-mailbox pool. `mailbox_assignments` holds the one mailbox each account is written
from (the primary key makes two replicas racing on an account agree on one); `deliveries.mailbox` is the
mailbox a delivery was claimed for, which counts each mailbox's rolling 24-hour sends and finds the mailbox
an in-doubt send must be looked up in (arrears_dispatcher_email.pool).

Revision ID: 0007
Revises: 0006
Create Date: 2027-03-10
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "dispatcher_email"


def upgrade() -> None:
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.mailbox_assignments (
            account_id text PRIMARY KEY,
            mailbox text NOT NULL,
            assigned_at timestamptz NOT NULL DEFAULT now(),
            previous_mailbox text,
            rehomed_at timestamptz,
            rehome_reason text
        )"""
    )
    op.execute(f"CREATE INDEX mailbox_assignments_mailbox ON {s}.mailbox_assignments (mailbox)")
    op.execute(f"ALTER TABLE {s}.deliveries ADD COLUMN mailbox text")
    op.execute(
        f"CREATE INDEX deliveries_mailbox_sends ON {s}.deliveries (mailbox, updated_at)"
        " WHERE state IN ('sending', 'sent')"
    )


def downgrade() -> None:
    s = SCHEMA
    op.execute(f"DROP INDEX IF EXISTS {s}.deliveries_mailbox_sends")
    op.execute(f"ALTER TABLE {s}.deliveries DROP COLUMN IF EXISTS mailbox")
    op.execute(f"DROP TABLE IF EXISTS {s}.mailbox_assignments")
