"""API keys move to the platform's `iam` schema (every service checks them); the audit log records the
request id of each entry.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.audit_log ADD COLUMN request_id text")
    op.execute(f"DROP TABLE IF EXISTS {S}.api_keys")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {S}.audit_log DROP COLUMN IF EXISTS request_id")
    op.execute(
        f"""CREATE TABLE {S}.api_keys (
            key_id text PRIMARY KEY,
            name text NOT NULL UNIQUE,
            role text NOT NULL CHECK (role IN ('viewer', 'agent', 'supervisor', 'admin')),
            team text,
            key_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )"""
    )
