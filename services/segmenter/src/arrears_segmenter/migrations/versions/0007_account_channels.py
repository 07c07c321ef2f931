"""segmenter: per-channel account state in `account_channels` (one row per account and channel of the
registry) instead of a column per channel and fact on `accounts`; `notices.failed_at` (a notice that failed
permanently: the segmenter falls back to the step's next channel)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = "segmenter"

# channel -> (address, consent, opt-out, invalid, do-not-contact) columns of accounts before this revision
LEGACY = {
    "sms": ("phone", "sms_consent", "sms_opt_out", "sms_invalid", "sms_do_not_contact"),
    "email": ("email", "email_consent", "email_opt_out", "email_invalid", "email_do_not_contact"),
}


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {S}.account_channels (
            account_id text NOT NULL,
            channel text NOT NULL,
            address text,
            consent boolean NOT NULL DEFAULT false,
            opted_out boolean NOT NULL DEFAULT false,
            invalid boolean NOT NULL DEFAULT false,
            stopped boolean NOT NULL DEFAULT false,
            PRIMARY KEY (account_id, channel)
        )"""
    )
    for channel, (address, consent, opt_out, invalid, stopped) in LEGACY.items():
        op.execute(
            f"""
            INSERT INTO {S}.account_channels
                (account_id, channel, address, consent, opted_out, invalid, stopped)
            SELECT account_id, '{channel}', {address}, {consent}, {opt_out}, {invalid}, {stopped}
            FROM {S}.accounts
            WHERE {address} IS NOT NULL OR {consent} OR {opt_out} OR {invalid} OR {stopped}"""
        )
    for columns in LEGACY.values():
        for column in columns:
            op.execute(f"ALTER TABLE {S}.accounts DROP COLUMN {column}")
    op.execute(f"ALTER TABLE {S}.notices ADD COLUMN failed_at timestamptz")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {S}.notices DROP COLUMN failed_at")
    for channel, (address, consent, opt_out, invalid, stopped) in LEGACY.items():
        op.execute(f"ALTER TABLE {S}.accounts ADD COLUMN {address} text")
        for flag in (consent, opt_out, invalid, stopped):
            op.execute(f"ALTER TABLE {S}.accounts ADD COLUMN {flag} boolean NOT NULL DEFAULT false")
        op.execute(
            f"""
            UPDATE {S}.accounts a SET {address} = c.address, {consent} = c.consent,
                {opt_out} = c.opted_out, {invalid} = c.invalid, {stopped} = c.stopped
            FROM {S}.account_channels c WHERE c.account_id = a.account_id AND c.channel = '{channel}'"""
        )
    op.execute(f"DROP TABLE {S}.account_channels")
