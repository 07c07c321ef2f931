"""segmenter: failed-payment retries (one row per failed payment: count, state, next retry) and the ledger of
customer notices that are not dunning steps (payment retries, receipts, promise / plan confirmations, dispute
acknowledgements), keyed by their deterministic notice id so that each is emitted once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.create_table(
        "payment_retries",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("payment_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # at_risk | exhausted | cleared
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("failure_ids", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("retry_count", sa.Integer, nullable=False),
        sa.Column("retries_max", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.Column("amount_minor", sa.BigInteger),
        sa.Column("currency", sa.Text),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "provider", "payment_id"),
        schema=S,
    )
    op.create_index(
        "payment_retries_due",
        "payment_retries",
        ["next_at"],
        schema=S,
        postgresql_where=sa.text("state = 'at_risk'"),
    )
    op.create_index(
        "payment_retries_open",
        "payment_retries",
        ["account_id"],
        schema=S,
        postgresql_where=sa.text("state <> 'cleared'"),
    )
    op.create_table(
        "customer_notices",
        sa.Column("notice_id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("trigger_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("customer_notices_account", "customer_notices", ["account_id"], schema=S)


def downgrade() -> None:
    op.drop_table("customer_notices", schema=S)
    op.drop_table("payment_retries", schema=S)
