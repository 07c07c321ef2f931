"""iam: API keys and console sessions, shared by every service's authentication.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "iam"


def upgrade() -> None:
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.api_keys (
            key_id text PRIMARY KEY,
            name text NOT NULL,
            roles text[] NOT NULL,
            team text,
            key_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL,
            expires_at timestamptz,
            last_used_at timestamptz,
            revoked_at timestamptz,
            rotated_from text
        )"""
    )
    op.execute(f"CREATE UNIQUE INDEX api_keys_active_name ON {s}.api_keys (name) WHERE revoked_at IS NULL")
    op.execute(
        f"""CREATE TABLE {s}.sessions (
            token_hash text PRIMARY KEY,
            subject text NOT NULL,
            name text NOT NULL,
            kind text NOT NULL,
            roles text[] NOT NULL,
            team text,
            csrf_token text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz
        )"""
    )
    op.execute(f"CREATE INDEX sessions_expiry ON {s}.sessions (expires_at)")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.sessions")
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.api_keys")
