"""iam: pending identity-provider sign-ins (authorization-code flow with PKCE): state -> verifier, nonce.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "iam"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE {SCHEMA}.sign_in_attempts (
            state_hash text PRIMARY KEY,
            code_verifier text NOT NULL,
            nonce text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.sign_in_attempts")
