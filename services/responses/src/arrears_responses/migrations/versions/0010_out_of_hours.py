"""responses: out-of-hours acknowledgements (issue #18 item 2).

- `team_calendars`: the replicated copy of the teams' working calendars, read from `team-calendars`
  (escalation owns them; services never read each other's schemas). The highest `version` per team wins, so
  a republished or out-of-order older version changes nothing.
- `out_of_hours_acks`: one row per acknowledgement; the primary key (account, channel, closed period) makes
  it at most one per conversation per closed period, across replicas and redeliveries.
- an index to find an account's confirmed opt-outs (no acknowledgement to a customer who opted out).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

S = "responses"


def upgrade() -> None:
    op.execute(f"""
        CREATE TABLE {S}.team_calendars (
            team text PRIMARY KEY,
            version bigint NOT NULL,
            calendar jsonb NOT NULL,
            changed_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute(f"""
        CREATE TABLE {S}.out_of_hours_acks (
            account_id text NOT NULL,
            channel text NOT NULL,
            closed_since timestamptz NOT NULL,
            notice_id text NOT NULL UNIQUE,
            reply_id text NOT NULL,
            team text NOT NULL,
            opens_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (account_id, channel, closed_since)
        )""")

    # "has this customer opted out here?" (an acknowledgement is never sent to one who did)
    op.execute(
        f"""CREATE INDEX auto_replies_confirmed_account ON {S}.auto_replies (account_id, channel)
            WHERE purpose = 'opt_out_confirmation'"""
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {S}.auto_replies_confirmed_account")
    op.execute(f"DROP TABLE IF EXISTS {S}.out_of_hours_acks")
    op.execute(f"DROP TABLE IF EXISTS {S}.team_calendars")
