"""segmenter initial schema: account projection, durable timers, notices, decisions

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    create_runner_tables(op, S)
    op.execute(f"""
        CREATE TABLE {S}.accounts (
            account_id text PRIMARY KEY,
            known boolean NOT NULL DEFAULT false,
            change text,
            source text,
            source_row integer,
            customer_name text NOT NULL DEFAULT '',
            phone text,
            email text,
            balance_minor bigint NOT NULL DEFAULT 0,
            currency text NOT NULL DEFAULT 'XXX',
            due_date date,
            last_payment_date date,
            last_payment_minor bigint,
            timezone text,
            timezone_unknown boolean NOT NULL DEFAULT true,
            country text,
            region text,
            sms_consent boolean NOT NULL DEFAULT false,
            email_consent boolean NOT NULL DEFAULT false,
            status text NOT NULL DEFAULT 'open',
            source_status text NOT NULL DEFAULT 'open',
            hold text,
            removed boolean NOT NULL DEFAULT false,
            content_hash text,
            as_of timestamptz,
            sms_opt_out boolean NOT NULL DEFAULT false,
            email_opt_out boolean NOT NULL DEFAULT false,
            do_not_contact boolean NOT NULL DEFAULT false,
            sms_invalid boolean NOT NULL DEFAULT false,
            email_invalid boolean NOT NULL DEFAULT false,
            paused_until date,
            promise_amount_minor bigint,
            cycle integer NOT NULL DEFAULT 0,
            cycle_due_date date,
            last_step integer NOT NULL DEFAULT 0,
            last_step_at timestamptz,
            days_past_due integer NOT NULL DEFAULT 0,
            aging_bucket text NOT NULL DEFAULT 'current',
            first_seen_at timestamptz NOT NULL,
            last_event_at timestamptz NOT NULL
        )""")
    op.execute(f"""
        CREATE TABLE {S}.timers (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            step integer NOT NULL,
            cycle integer NOT NULL,
            due_at timestamptz NOT NULL,
            state text NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled', 'suppressed')),
            attempts integer NOT NULL DEFAULT 0,
            reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (account_id, step, cycle)
        )""")
    op.execute(f"CREATE INDEX timers_due ON {S}.timers (due_at) WHERE state = 'pending'")
    op.execute(f"CREATE INDEX timers_account ON {S}.timers (account_id)")
    op.execute(f"""
        CREATE TABLE {S}.notices (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            policy_id text NOT NULL,
            policy_version integer NOT NULL,
            step integer NOT NULL,
            cycle integer NOT NULL,
            channel text NOT NULL,
            tier text NOT NULL,
            emitted_at timestamptz NOT NULL,
            UNIQUE (account_id, policy_id, policy_version, step, cycle, channel)
        )""")
    op.execute(f"CREATE INDEX notices_account_channel ON {S}.notices (account_id, channel, emitted_at)")
    op.execute(f"""
        CREATE TABLE {S}.decisions (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            step integer,
            cycle integer,
            channel text,
            outcome text NOT NULL,
            rule_id text NOT NULL,
            reason text NOT NULL DEFAULT '',
            notice_id text,
            defer_until timestamptz,
            at timestamptz NOT NULL
        )""")
    op.execute(f"CREATE INDEX decisions_account ON {S}.decisions (account_id, id)")


def downgrade() -> None:
    for t in ("decisions", "notices", "timers", "accounts", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {S}.{t}")
