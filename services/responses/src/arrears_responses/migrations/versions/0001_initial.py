"""responses: contact index, sent messages, webhook events, replies, delivery status.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op
from arrears_shared.db.runner_tables import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "responses"


def upgrade() -> None:
    create_runner_tables(op, SCHEMA)
    s = SCHEMA
    # channel + address (E.164 number / email) -> the account and notice last sent there
    op.execute(
        f"""CREATE TABLE {s}.contacts (
            channel text NOT NULL,
            address text NOT NULL,
            account_id text NOT NULL,
            notice_id text NOT NULL,
            sent_at timestamptz NOT NULL,
            PRIMARY KEY (channel, address)
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.sent_messages (
            provider_message_id text PRIMARY KEY,
            channel text NOT NULL,
            account_id text NOT NULL,
            notice_id text NOT NULL,
            sent_at timestamptz NOT NULL
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.webhook_events (
            id text PRIMARY KEY,
            provider text NOT NULL,
            type text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.replies (
            reply_id text PRIMARY KEY,
            channel text NOT NULL,
            provider_message_id text,
            from_address text NOT NULL,
            to_address text,
            text text NOT NULL,
            account_id text,
            notice_id text,
            intent text NOT NULL,
            confidence double precision NOT NULL,
            rule text,
            promise_amount_minor bigint,
            promise_date date,
            received_at timestamptz NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"CREATE INDEX replies_unmatched ON {s}.replies (received_at) WHERE account_id IS NULL")
    op.execute(f"CREATE INDEX replies_account ON {s}.replies (account_id, received_at)")
    op.execute(
        f"""CREATE TABLE {s}.delivery_status (
            provider_message_id text PRIMARY KEY,
            notice_id text,
            account_id text,
            status text NOT NULL,
            event_id text NOT NULL,
            status_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


def downgrade() -> None:
    # tables, not the schema: alembic_version lives in it and alembic still has to update it
    for t in ("delivery_status", "replies", "webhook_events", "sent_messages", "contacts", "outbox", "inbox"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
