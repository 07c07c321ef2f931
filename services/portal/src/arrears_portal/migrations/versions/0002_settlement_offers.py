"""portal: the settlement offers a supervisor made (learnt from `arrears.settlement.offer.v1` on `overrides`)
and whether the debtor accepted them here.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "portal"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {SCHEMA}.settlement_offers (
            offer_id text PRIMARY KEY,
            account_id text NOT NULL,
            amount_minor bigint NOT NULL,
            currency text NOT NULL,
            balance_minor bigint NOT NULL,
            expires_on date NOT NULL,
            status text NOT NULL CHECK (status IN ('offered', 'withdrawn', 'accepted')),
            changed_at timestamptz NOT NULL,
            accepted_at timestamptz,
            accepted_action_id text
        )"""
    )
    op.execute(
        f"CREATE INDEX settlement_offers_account ON {SCHEMA}.settlement_offers (account_id, expires_on)"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.settlement_offers")
