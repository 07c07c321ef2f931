"""segmenter: the latest model score of each account (issue #20, `account-scored` from the scoring job).
One row per account, replaced by a later score; campaigns select on its band while it is fresh, and the
planner uses its best channel and hour (arrears_segmenter.scores). No personal data.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {S}.account_scores (
            account_id text PRIMARY KEY,
            scored_on date NOT NULL,
            scored_at timestamptz NOT NULL,
            model_version text NOT NULL,
            risk_score integer NOT NULL CHECK (risk_score BETWEEN 0 AND 100),
            band text NOT NULL,
            p_pay_14d double precision NOT NULL,
            dropout_risk double precision NOT NULL,
            expected_recovery_minor bigint NOT NULL,
            currency text NOT NULL,
            best_channel text,
            best_hour integer CHECK (best_hour BETWEEN 0 AND 23),
            reasons jsonb NOT NULL DEFAULT '[]',
            received_at timestamptz NOT NULL
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.account_scores")
