"""escalation: the latest model score of each account (issue #20, `account-scored`): its band and since
when (a high band assigns the account to the recovery team once per band change, rule `high_risk_score`),
and its expected recovery (the work list's `expected_recovery` order, also in the reporting currency so
accounts in several currencies sort together). No personal data.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {S}.account_scores (
            account_id text PRIMARY KEY,
            scored_on date NOT NULL,
            scored_at timestamptz NOT NULL,
            model_version text NOT NULL,
            risk_score integer NOT NULL,
            band text NOT NULL,
            band_since date NOT NULL,
            expected_recovery_minor bigint NOT NULL,
            currency text NOT NULL,
            expected_recovery_reporting_minor bigint,
            updated_at timestamptz NOT NULL
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.account_scores")
