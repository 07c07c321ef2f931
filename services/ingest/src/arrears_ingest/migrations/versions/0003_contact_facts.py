"""ingest: contact facts (last contact, last reply, intent, promise) per account, for the sheet write-back

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # one row per account: the newest fact of each kind (by the event's own time, so events arriving out of
    # order never overwrite a newer fact); `version` counts changes, `written_version` the last one written
    # to the sheet; `unplaced` = the account was not in the sheet when last flushed
    op.execute(
        f"""CREATE TABLE {SCHEMA}.contact_facts (
            account_id text PRIMARY KEY,
            contact_at timestamptz,
            contact_channel text,
            contact_status text,
            reply_at timestamptz,
            reply_channel text,
            reply_intent text,
            promise_at timestamptz,
            promise_amount_minor bigint,
            promise_currency text,
            promise_date date,
            version bigint NOT NULL DEFAULT 1,
            written_version bigint NOT NULL DEFAULT 0,
            unplaced boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(
        f"CREATE INDEX contact_facts_dirty ON {SCHEMA}.contact_facts (account_id) "
        "WHERE version > written_version"
    )
    op.execute(f"CREATE INDEX contact_facts_unplaced ON {SCHEMA}.contact_facts (account_id) WHERE unplaced")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.contact_facts")
