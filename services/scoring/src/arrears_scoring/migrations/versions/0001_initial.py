"""scoring: the history it learns from (account snapshots, payments, messages, replies, overrides, link
clicks; no personal data), the model versions, the daily scores and runs, and the audit log.

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

SCHEMA = "scoring"
TABLES = ("runs", "scores", "models", "clicks", "overrides", "replies", "messages", "payments", "snapshots")


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    create_audit_log(op, SCHEMA)
    s = SCHEMA
    # each state of an account at its source (account-changed), in the order of `at` (its as_of)
    op.execute(
        f"""CREATE TABLE {s}.snapshots (
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            balance_minor bigint NOT NULL,
            currency text NOT NULL,
            due_date date NOT NULL,
            open boolean NOT NULL,
            consent_sms boolean NOT NULL,
            consent_email boolean NOT NULL,
            consent_whatsapp boolean NOT NULL,
            PRIMARY KEY (account_id, at)
        )"""
    )
    op.execute(f"CREATE INDEX snapshots_at ON {s}.snapshots (at)")
    # money received: a balance that went down between two snapshots
    op.execute(
        f"""CREATE TABLE {s}.payments (
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            amount_minor bigint NOT NULL,
            PRIMARY KEY (account_id, at)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.messages (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            channel text NOT NULL,
            local_hour smallint NOT NULL,
            tier text NOT NULL
        )"""
    )
    op.execute(f"CREATE INDEX messages_at ON {s}.messages (at)")
    op.execute(
        f"""CREATE TABLE {s}.replies (
            reply_id text PRIMARY KEY,
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            channel text NOT NULL,
            intent text NOT NULL,
            promise_date date
        )"""
    )
    op.execute(f"CREATE INDEX replies_at ON {s}.replies (at)")
    op.execute(
        f"""CREATE TABLE {s}.overrides (
            override_id text PRIMARY KEY,
            account_id text NOT NULL,
            at timestamptz NOT NULL,
            action text NOT NULL,
            promise_date date
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.clicks (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            at timestamptz NOT NULL
        )"""
    )
    # every model version ever trained; at most one active per kind. `params` is the model as JSON numbers
    # (arrears_scoring.models.linear), never a pickle: loading a row runs no code.
    op.execute(
        f"""CREATE TABLE {s}.models (
            version text PRIMARY KEY,
            kind text NOT NULL,
            format text NOT NULL,
            params bytea NOT NULL,
            metrics jsonb NOT NULL,
            source text NOT NULL,
            train_from date NOT NULL,
            train_to date NOT NULL,
            test_from date NOT NULL,
            test_to date NOT NULL,
            rows integer NOT NULL,
            active boolean NOT NULL DEFAULT false,
            decision text NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz
        )"""
    )
    op.execute(f"CREATE UNIQUE INDEX models_one_active ON {s}.models (kind) WHERE active")
    op.execute(f"CREATE INDEX models_kind_created ON {s}.models (kind, created_at DESC)")
    op.execute(
        f"""CREATE TABLE {s}.scores (
            account_id text NOT NULL,
            scored_on date NOT NULL,
            model_version text NOT NULL,
            models jsonb NOT NULL,
            risk_score smallint NOT NULL,
            band text NOT NULL,
            p_pay_14d double precision NOT NULL,
            dropout_risk double precision NOT NULL,
            expected_recovery double precision NOT NULL,
            expected_recovery_minor bigint NOT NULL,
            currency text NOT NULL,
            best_channel text,
            best_hour smallint,
            reasons jsonb NOT NULL,
            scored_at timestamptz NOT NULL,
            features_as_of timestamptz NOT NULL,
            PRIMARY KEY (account_id, scored_on)
        )"""
    )
    # one row per UTC day: written in the same transaction as that day's scores and events
    op.execute(
        f"""CREATE TABLE {s}.runs (
            day date PRIMARY KEY,
            started_at timestamptz NOT NULL,
            finished_at timestamptz NOT NULL,
            accounts integer NOT NULL,
            published integer NOT NULL,
            model_version text NOT NULL,
            run_by text NOT NULL
        )"""
    )


def downgrade() -> None:
    # the tables, not the schema: Alembic's version table lives in it
    for t in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
    drop_audit_log(op, SCHEMA)
    for t in ("outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
