"""portal: the account facts it verifies against (sealed), link opens, verification attempts and lockouts,
sessions, the debtor's actions, and the audit log.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op
from arrears_shared.audit.tables import create_audit_log, drop_audit_log
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "portal"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    create_audit_log(op, SCHEMA)
    s = SCHEMA
    # the latest account-changed per account; phone_tail is sealed with the account's vault key
    op.execute(
        f"""CREATE TABLE {s}.accounts (
            account_id text PRIMARY KEY,
            first_name text,
            phone_tail text,
            balance_minor bigint NOT NULL,
            currency text NOT NULL,
            due_date date NOT NULL,
            status text NOT NULL,
            removed boolean NOT NULL DEFAULT false,
            timezone text,
            channels text[] NOT NULL DEFAULT '{{}}',
            as_of timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    # first open of each notice's link (one link-clicked per notice)
    op.execute(
        f"""CREATE TABLE {s}.link_opens (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            channel text NOT NULL,
            tier text,
            first_opened_at timestamptz NOT NULL,
            opens integer NOT NULL DEFAULT 1,
            last_opened_at timestamptz NOT NULL
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.verification_attempts (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            notice_id text NOT NULL,
            ok boolean NOT NULL,
            client text NOT NULL,
            at timestamptz NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX verification_attempts_account ON {s}.verification_attempts (account_id, at)")
    op.execute(
        f"""CREATE TABLE {s}.lockouts (
            account_id text PRIMARY KEY,
            locked_at timestamptz NOT NULL,
            locked_until timestamptz NOT NULL,
            failures integer NOT NULL
        )"""
    )
    # a verified visit: the cookie holds a random token, the table its SHA-256
    op.execute(
        f"""CREATE TABLE {s}.sessions (
            token_sha256 text PRIMARY KEY,
            account_id text NOT NULL,
            notice_id text NOT NULL,
            locale text NOT NULL,
            csrf text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            ended_at timestamptz
        )"""
    )
    op.execute(f"CREATE INDEX sessions_expiry ON {s}.sessions (expires_at)")
    op.execute(
        f"""CREATE TABLE {s}.actions (
            action_id text PRIMARY KEY,
            account_id text NOT NULL,
            notice_id text NOT NULL,
            kind text NOT NULL,
            detail jsonb NOT NULL,
            at timestamptz NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX actions_account ON {s}.actions (account_id, at)")


def downgrade() -> None:
    # the tables, not the schema: Alembic's version table lives in it
    for t in ("actions", "sessions", "lockouts", "verification_attempts", "link_opens", "accounts"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
    drop_audit_log(op, SCHEMA)
    for t in ("outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
