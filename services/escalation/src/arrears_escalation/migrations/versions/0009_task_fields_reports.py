"""escalation: the collections data model completed (issue #18 item 5).

- Tasks carry the campaign of the account's latest automatic message when the task was created, the promise
  a follow-up-promise task is about (id, amount + currency, date) and the follow-up date a collector sets
  (`follow_up_at`, indexed for the work list's "follow-up due" filter and sort).
- `reports`: the weekly KPI report and the monthly scorecard, one row per (kind, period) — the primary key is
  what makes a report once per period across replicas and restarts. The figures are stored (jsonb); the XLSX
  and PDF files are rendered from them on demand, so a download is always the same document. The e-mail to
  the distribution list has its own state on the row (pending -> sending -> sent | failed), committed before
  the provider call, with a deterministic Message-ID to reconcile a send left in doubt.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(
        f"""ALTER TABLE {S}.tasks ADD COLUMN campaign_id text,
            ADD COLUMN promise_id text,
            ADD COLUMN promise_amount_minor bigint,
            ADD COLUMN promise_currency text,
            ADD COLUMN promise_date date,
            ADD COLUMN follow_up_at timestamptz"""
    )
    op.execute(f"CREATE INDEX tasks_follow_up ON {S}.tasks (follow_up_at) WHERE status = 'open'")
    op.execute(f"CREATE INDEX tasks_campaign ON {S}.tasks (campaign_id) WHERE campaign_id IS NOT NULL")
    op.execute(f"""
        CREATE TABLE {S}.reports (
            report_id text PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('weekly_kpi', 'monthly_scorecard')),
            period_start date NOT NULL,
            period_end date NOT NULL,
            generated_at timestamptz NOT NULL,
            generated_by text NOT NULL,
            figures jsonb NOT NULL,
            recipients jsonb NOT NULL DEFAULT '[]'::jsonb,
            email_state text NOT NULL DEFAULT 'pending'
                CHECK (email_state IN ('pending', 'sending', 'sent', 'failed', 'none')),
            email_attempts integer NOT NULL DEFAULT 0,
            email_message_id text,
            email_error text,
            emailed_at timestamptz,
            UNIQUE (kind, period_start)
        )""")
    op.execute(
        f"CREATE INDEX reports_email ON {S}.reports (email_state) WHERE email_state IN ('pending', 'sending')"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.reports")
    op.execute(f"DROP INDEX IF EXISTS {S}.tasks_follow_up")
    op.execute(f"DROP INDEX IF EXISTS {S}.tasks_campaign")
    op.execute(
        f"""ALTER TABLE {S}.tasks DROP COLUMN IF EXISTS campaign_id, DROP COLUMN IF EXISTS promise_id,
            DROP COLUMN IF EXISTS promise_amount_minor, DROP COLUMN IF EXISTS promise_currency,
            DROP COLUMN IF EXISTS promise_date, DROP COLUMN IF EXISTS follow_up_at"""
    )
