"""vault: one data key per account (wrapped by the master key), and tombstones of erased accounts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "vault"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {SCHEMA}.account_keys (
            subject text PRIMARY KEY,
            kek_id text,
            wrapped_key bytea,
            created_at timestamptz NOT NULL DEFAULT now(),
            erased_at timestamptz,
            erased_by text,
            CONSTRAINT account_keys_live_or_erased CHECK (
                (wrapped_key IS NOT NULL AND kek_id IS NOT NULL AND erased_at IS NULL)
                OR (wrapped_key IS NULL AND kek_id IS NULL AND erased_at IS NOT NULL)
            )
        )"""
    )
    op.execute(f"CREATE INDEX account_keys_kek ON {SCHEMA}.account_keys (kek_id) WHERE kek_id IS NOT NULL")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.account_keys")
