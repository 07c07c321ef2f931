"""ingest: runner tables, sheet snapshot, rejects, runs

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    op.execute(
        f"""CREATE TABLE {SCHEMA}.snapshot (
            account_id text PRIMARY KEY,
            content_hash text NOT NULL,
            raw_hash text NOT NULL,
            row_number integer NOT NULL,
            data jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(
        f"""CREATE TABLE {SCHEMA}.runs (
            id uuid PRIMARY KEY,
            source text NOT NULL,
            trigger text NOT NULL,
            started timestamptz NOT NULL,
            finished timestamptz,
            rows integer NOT NULL DEFAULT 0,
            accepted integer NOT NULL DEFAULT 0,
            rejected integer NOT NULL DEFAULT 0,
            unchanged integer NOT NULL DEFAULT 0,
            created integer NOT NULL DEFAULT 0,
            updated integer NOT NULL DEFAULT 0,
            removed integer NOT NULL DEFAULT 0,
            warnings integer NOT NULL DEFAULT 0,
            status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            error text
        )"""
    )
    op.execute(f"CREATE INDEX runs_source_started ON {SCHEMA}.runs (source, started DESC)")
    op.execute(
        f"""CREATE TABLE {SCHEMA}.rejects (
            id bigserial PRIMARY KEY,
            source text NOT NULL,
            batch_id uuid NOT NULL,
            row_number integer NOT NULL,
            account_id text,
            "column" text,
            value text,
            reason text NOT NULL,
            balance_minor bigint,
            currency text,
            rejected_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(
        f"CREATE INDEX rejects_source_balance ON {SCHEMA}.rejects (source, balance_minor DESC NULLS LAST, row_number)"
    )


def downgrade() -> None:
    for t in ("rejects", "runs", "snapshot", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
