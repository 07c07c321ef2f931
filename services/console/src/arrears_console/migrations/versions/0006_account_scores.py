"""console: the latest model score of each account (issue #20, `account-scored`), shown on the account page
with its top reasons and used by the account list's risk band filter. No personal data.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "console"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {S}.scores (
            account_id text PRIMARY KEY,
            scored_on date NOT NULL,
            scored_at timestamptz NOT NULL,
            model_version text NOT NULL,
            risk_score integer NOT NULL,
            band text NOT NULL,
            p_pay_14d double precision NOT NULL,
            dropout_risk double precision NOT NULL,
            expected_recovery double precision NOT NULL,
            expected_recovery_minor bigint NOT NULL,
            currency text NOT NULL,
            best_channel text,
            best_hour integer,
            reasons jsonb NOT NULL DEFAULT '[]',
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"CREATE INDEX scores_band ON {S}.scores (band)")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.scores")
