"""escalation: team business hours, SLAs in working time, breach notifications (issue #18 item 2).

- `teams`: one row per team: its working calendar (IANA zone, weekly hours, holidays; jsonb validated by
  `arrears_shared.working_time.TeamCalendar`), its lead (a principal name) and its members' notification
  email addresses (`{principal: address}`), with a `version` that grows with every change (published on
  `team-calendars`); `calendars_published`: when every calendar was last published again (daily).
- `tasks.sla_working_s` (the SLA in working seconds, as the rule gave it), `tasks.sla_at_risk_at` (the
  instant 75 % of it has passed) and the new `sla_state` `at_risk`. Existing tasks are backfilled with what
  they were promised: their wall-clock SLA (`sla_due_at - created_at`) and three quarters of it.
- `notifications`: one row per (kind, task, recipient): the primary key makes a breach notify each person
  once across replicas and restarts. `notification_emails`: the email of a notification, its own state
  machine (pending -> sending -> sent | failed), committed before the provider call, with a deterministic
  Message-ID to reconcile a send left in doubt.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(f"""
        CREATE TABLE {S}.teams (
            team text PRIMARY KEY CHECK (team ~ '^[A-Za-z0-9_.-]{{1,64}}$'),
            calendar jsonb NOT NULL,
            lead text,
            emails jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz NOT NULL,
            updated_by text NOT NULL
        )""")
    # when every calendar was last published again (one row)
    op.execute(f"""
        CREATE TABLE {S}.calendars_published (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            at timestamptz NOT NULL
        )""")
    op.execute(f"ALTER TABLE {S}.tasks ADD COLUMN sla_working_s double precision")
    op.execute(f"ALTER TABLE {S}.tasks ADD COLUMN sla_at_risk_at timestamptz")
    op.execute(
        f"""UPDATE {S}.tasks SET sla_working_s = extract(epoch FROM sla_due_at - created_at),
            sla_at_risk_at = created_at + (sla_due_at - created_at) * 0.75"""
    )
    op.execute(f"ALTER TABLE {S}.tasks DROP CONSTRAINT IF EXISTS tasks_sla_state_check")
    op.execute(
        f"""ALTER TABLE {S}.tasks ADD CONSTRAINT tasks_sla_state_check
            CHECK (sla_state IN ('ok', 'at_risk', 'breached', 'escalated'))"""
    )
    op.execute(f"CREATE INDEX tasks_open_at_risk ON {S}.tasks (sla_at_risk_at) WHERE status = 'open'")
    op.execute(f"""
        CREATE TABLE {S}.notifications (
            id bigserial UNIQUE,
            kind text NOT NULL CHECK (kind IN ('sla_breach')),
            task_id text NOT NULL,
            recipient text NOT NULL,
            why text NOT NULL CHECK (why IN ('assignee', 'lead')),
            account_id text NOT NULL,
            team text NOT NULL,
            title text NOT NULL,
            link text NOT NULL,
            created_at timestamptz NOT NULL,
            read_at timestamptz,
            PRIMARY KEY (kind, task_id, recipient)
        )""")
    op.execute(f"CREATE INDEX notifications_inbox ON {S}.notifications (recipient, created_at DESC)")
    op.execute(f"CREATE INDEX notifications_unread ON {S}.notifications (recipient) WHERE read_at IS NULL")
    op.execute(f"""
        CREATE TABLE {S}.notification_emails (
            notification_id bigint PRIMARY KEY REFERENCES {S}.notifications (id),
            address text NOT NULL,
            message_id text NOT NULL UNIQUE,
            state text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
            attempts int NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL,
            provider_message_id text,
            error text,
            updated_at timestamptz NOT NULL
        )""")
    op.execute(
        f"""CREATE INDEX notification_emails_due ON {S}.notification_emails (next_attempt_at)
            WHERE state IN ('pending', 'sending')"""
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.notification_emails")
    op.execute(f"DROP TABLE IF EXISTS {S}.notifications")
    op.execute(f"DROP INDEX IF EXISTS {S}.tasks_open_at_risk")
    op.execute(f"UPDATE {S}.tasks SET sla_state = 'ok' WHERE sla_state = 'at_risk'")
    op.execute(f"ALTER TABLE {S}.tasks DROP CONSTRAINT IF EXISTS tasks_sla_state_check")
    op.execute(
        f"""ALTER TABLE {S}.tasks ADD CONSTRAINT tasks_sla_state_check
            CHECK (sla_state IN ('ok', 'breached', 'escalated'))"""
    )
    op.execute(f"ALTER TABLE {S}.tasks DROP COLUMN sla_at_risk_at, DROP COLUMN sla_working_s")
    op.execute(f"DROP TABLE IF EXISTS {S}.calendars_published")
    op.execute(f"DROP TABLE IF EXISTS {S}.teams")
