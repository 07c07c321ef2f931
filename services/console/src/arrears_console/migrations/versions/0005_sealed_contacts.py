"""console: account names, phones and emails sealed with the account's key; blind indexes keep search working.

`name_bidx` holds keyed hashes of every prefix (2+ characters) of every word of the name, `phone_bidx` of
every trailing run (4+ digits) of the number, `email_bidx` of the whole address, its local part and its
domain (arrears_shared.vault.blind).
Rows written before this revision keep their plaintext until their account's next event seals them.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "console"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.accounts ADD COLUMN name_bidx text[] NOT NULL DEFAULT '{{}}', "
        "ADD COLUMN phone_bidx text[] NOT NULL DEFAULT '{}', ADD COLUMN email_bidx text[] NOT NULL DEFAULT '{}'"
    )
    op.execute(f"CREATE INDEX accounts_name_bidx ON {S}.accounts USING gin (name_bidx)")
    op.execute(f"CREATE INDEX accounts_phone_bidx ON {S}.accounts USING gin (phone_bidx)")
    op.execute(f"CREATE INDEX accounts_email_bidx ON {S}.accounts USING gin (email_bidx)")


def downgrade() -> None:
    for ix in ("accounts_name_bidx", "accounts_phone_bidx", "accounts_email_bidx"):
        op.execute(f"DROP INDEX IF EXISTS {S}.{ix}")
    op.execute(
        f"ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS name_bidx, DROP COLUMN IF EXISTS phone_bidx, "
        "DROP COLUMN IF EXISTS email_bidx"
    )
