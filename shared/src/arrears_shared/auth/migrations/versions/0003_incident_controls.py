"""iam: incident controls and access monitoring — sending halts, sign-in lockouts, security events and
per-principal account-read counts.

- `sending_halts`: one row per halt (scope all / channel / campaign); at most one active halt per scope and
  target. Every dispatcher reads it in each claim transaction; only the console (and the CLI) writes it.
- `sign_in_locks`: failed sign-ins per API key (the public key id) inside the window, and the lock they set.
- `security_events`: what the platform raised by itself (a lockout, an unusual-access alert, a revoke-all),
  append-only for the runtime roles; `dedupe` keeps one event per principal per window.
- `access_counts`: accounts read per principal per minute (flushed in batches by every replica), the
  trailing baseline of the unusual-access alert.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "iam"


def upgrade() -> None:
    s = SCHEMA
    op.execute(
        f"""CREATE TABLE {s}.sending_halts (
            halt_id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
            scope text NOT NULL CHECK (scope IN ('all', 'channel', 'campaign')),
            target text NOT NULL DEFAULT '' CHECK ((scope = 'all') = (target = '')),
            reason text NOT NULL CHECK (length(reason) BETWEEN 3 AND 500),
            set_at timestamptz NOT NULL DEFAULT now(),
            set_by text NOT NULL,
            cleared_at timestamptz,
            cleared_by text,
            clear_reason text
        )"""
    )
    op.execute(
        f"CREATE UNIQUE INDEX sending_halts_active ON {s}.sending_halts (scope, target) WHERE cleared_at IS NULL"
    )
    op.execute(
        f"""CREATE TABLE {s}.sign_in_locks (
            key_id text PRIMARY KEY,
            failures timestamptz[] NOT NULL DEFAULT '{{}}',
            last_failure_at timestamptz,
            locked_at timestamptz,
            locked_until timestamptz,
            unlocked_at timestamptz,
            unlocked_by text
        )"""
    )
    op.execute(
        f"""CREATE TABLE {s}.security_events (
            event_id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
            at timestamptz NOT NULL DEFAULT now(),
            kind text NOT NULL,
            subject text NOT NULL,
            role text NOT NULL DEFAULT '',
            service text NOT NULL DEFAULT '',
            detail jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            dedupe text UNIQUE
        )"""
    )
    op.execute(f"CREATE INDEX security_events_at ON {s}.security_events (at DESC)")
    op.execute(
        f"""CREATE TABLE {s}.access_counts (
            principal text NOT NULL,
            bucket timestamptz NOT NULL,
            role text NOT NULL DEFAULT '',
            accounts integer NOT NULL DEFAULT 0,
            PRIMARY KEY (principal, bucket)
        )"""
    )
    op.execute(f"CREATE INDEX access_counts_bucket ON {s}.access_counts (bucket)")


def downgrade() -> None:
    for t in ("access_counts", "security_events", "sign_in_locks", "sending_halts"):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{t}")
