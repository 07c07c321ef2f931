"""ingest: failed payment attempts reported by the payment webhooks (published as PaymentFailed)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # one row per failed attempt (Stripe: the charge; generic: the payment id): the same failure announced
    # by two events (charge.failed + payment_intent.payment_failed) is recorded and published once
    op.execute(
        f"""CREATE TABLE {SCHEMA}.payment_failures (
            provider text NOT NULL,
            failure_id text NOT NULL,
            payment_id text NOT NULL,
            account_id text NOT NULL,
            amount_minor bigint,
            currency text,
            failure_code text,
            failure_message text NOT NULL DEFAULT '',
            failed_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            event_id text NOT NULL,
            PRIMARY KEY (provider, failure_id)
        )"""
    )
    op.execute(f"CREATE INDEX payment_failures_account ON {SCHEMA}.payment_failures (account_id, failed_at)")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.payment_failures")
