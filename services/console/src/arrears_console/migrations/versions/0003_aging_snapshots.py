"""console: daily aging snapshots (per day, bucket and currency), for the aging trend.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "console"


def upgrade() -> None:
    # written once per UTC day by the console's aging snapshot loop (ON CONFLICT DO NOTHING); reporting_minor
    # is NULL when the currency had no rate; reporting_currency says which currency reporting_minor is in
    op.execute(
        f"""CREATE TABLE {SCHEMA}.aging_snapshots (
            day date NOT NULL,
            bucket text NOT NULL,
            currency text NOT NULL,
            accounts integer NOT NULL,
            balance_minor bigint NOT NULL,
            reporting_minor bigint,
            reporting_currency text NOT NULL,
            taken_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (day, bucket, currency)
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.aging_snapshots")
