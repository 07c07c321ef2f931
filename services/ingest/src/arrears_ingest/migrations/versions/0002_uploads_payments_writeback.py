"""ingest: snapshot origin, payments (idempotent), webhook deliveries (replay guard), sheet write-back queue

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # which source created the account: a sheet run removes only absent accounts of origin 'sheet'
    op.execute(f"ALTER TABLE {SCHEMA}.snapshot ADD COLUMN origin text NOT NULL DEFAULT 'sheet'")
    op.execute(
        f"""CREATE TABLE {SCHEMA}.payments (
            provider text NOT NULL,
            payment_id text NOT NULL,
            account_id text NOT NULL,
            amount_minor bigint NOT NULL,
            currency text NOT NULL,
            paid_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            event_id text NOT NULL,
            source_balance_minor bigint NOT NULL,
            balance_after_minor bigint NOT NULL,
            reconciled_at timestamptz,
            PRIMARY KEY (provider, payment_id)
        )"""
    )
    op.execute(
        f"CREATE INDEX payments_pending ON {SCHEMA}.payments (account_id, paid_at) WHERE reconciled_at IS NULL"
    )
    op.execute(
        f"""CREATE TABLE {SCHEMA}.webhook_deliveries (
            provider text NOT NULL,
            delivery_id text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            outcome text NOT NULL,
            PRIMARY KEY (provider, delivery_id)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {SCHEMA}.writeback (
            target text PRIMARY KEY,
            account_id text,
            row_number integer NOT NULL,
            status text NOT NULL,
            reason text NOT NULL,
            queued_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0,
            last_error text
        )"""
    )


def downgrade() -> None:
    for t in ("writeback", "webhook_deliveries", "payments"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
    op.execute(f"ALTER TABLE {SCHEMA}.snapshot DROP COLUMN IF EXISTS origin")
