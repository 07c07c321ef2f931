"""console read models: accounts, opt-outs, timeline, counters, rejects, cases, DLQ view.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "console"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.accounts (
            account_id text PRIMARY KEY,
            customer_name text NOT NULL,
            balance_minor bigint NOT NULL,
            currency text NOT NULL,
            due_date date NOT NULL,
            status text NOT NULL,
            source text NOT NULL,
            removed boolean NOT NULL DEFAULT false,
            sms_consent boolean NOT NULL,
            email_consent boolean NOT NULL,
            last_payment_date date,
            as_of timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"CREATE INDEX accounts_due ON {s}.accounts (due_date) WHERE NOT removed")
    op.execute(
        f"""CREATE TABLE {s}.opt_outs (
            account_id text NOT NULL,
            channel text NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (account_id, channel)
        )"""
    )
    # append-only; the runner's inbox already makes each ce_id apply once, so no unique index (write speed)
    op.execute(
        f"""CREATE TABLE {s}.timeline (
            id bigserial PRIMARY KEY,
            ce_id text NOT NULL,
            account_id text NOT NULL,
            topic text NOT NULL,
            ce_type text NOT NULL,
            at timestamptz NOT NULL,
            summary text NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX timeline_account ON {s}.timeline (account_id, at DESC)")
    op.execute(
        f"""CREATE TABLE {s}.counters (
            topic text NOT NULL,
            dim text NOT NULL,
            n bigint NOT NULL,
            last_at timestamptz NOT NULL,
            PRIMARY KEY (topic, dim)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.rejects (
            ce_id text PRIMARY KEY,
            account_id text NOT NULL,
            source text NOT NULL,
            batch_id text NOT NULL,
            row_number integer NOT NULL,
            "column" text,
            value text,
            reason text NOT NULL,
            rejected_at timestamptz NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX rejects_at ON {s}.rejects (rejected_at DESC)")
    op.execute(
        f"""CREATE TABLE {s}.cases (
            case_id text PRIMARY KEY,
            account_id text NOT NULL,
            reason text NOT NULL,
            priority text NOT NULL,
            detail text NOT NULL,
            status text NOT NULL DEFAULT 'open',
            opened_at timestamptz NOT NULL
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.dlq (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            partition integer NOT NULL,
            "offset" bigint NOT NULL,
            ce_id text,
            ce_type text,
            account_id text,
            original_topic text,
            original_partition integer,
            original_offset bigint,
            consumer_group text,
            reason text,
            attempts integer,
            service text,
            dead_lettered_at timestamptz,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (topic, partition, "offset")
        )"""
    )
    op.execute(f"CREATE INDEX dlq_recorded ON {s}.dlq (recorded_at DESC)")


def downgrade() -> None:
    # tables, not the schema: alembic_version lives in it and alembic still has to update it
    for t in ("dlq", "cases", "rejects", "counters", "timeline", "opt_outs", "accounts", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
