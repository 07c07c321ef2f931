"""escalation: settlement offers supervisors make (issue #19): a reduced amount the customer may accept in
the portal until `expires_on` (their local day). `status` moves offered -> withdrawn | accepted | expired
(set when a new offer is made after the day passed; until then an offered one past its day reads as
expired). The supervisor's note is sealed with the account's data key.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {S}.settlement_offers (
            offer_id text PRIMARY KEY,
            account_id text NOT NULL,
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL,
            balance_minor bigint NOT NULL,
            expires_on date NOT NULL,
            note text NOT NULL DEFAULT '',
            status text NOT NULL CHECK (status IN ('offered', 'withdrawn', 'accepted', 'expired')),
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            withdrawn_by text,
            withdrawn_at timestamptz,
            accepted_at timestamptz,
            accepted_override_id text
        )"""
    )
    op.execute(f"CREATE INDEX settlement_offers_account ON {S}.settlement_offers (account_id, created_at)")
    # at most one offer open per account: a new one needs the old one withdrawn first
    op.execute(
        f"CREATE UNIQUE INDEX settlement_offers_one_open ON {S}.settlement_offers (account_id) "
        "WHERE status = 'offered'"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.settlement_offers")
