"""responses: addresses and reply texts sealed with the account's key (arrears_shared.vault); blind indexes keep
the lookups by address working.

`contacts.address_bidx` / `auto_replies.address_bidx` hold the keyed hash of the normalised address (by the
channel's address kind); what was unique on (channel, address) is unique on (channel, address_bidx) now.
Rows written before this revision have no index and their address in clear: they stay unique and found by
the plaintext address (partial indexes `WHERE address_bidx IS NULL`) and a contact is replaced by a sealed
row when a message is next sent to that address. Erasure clears `address_bidx` (every `*_bidx` column), so an
erased account is found by no address. `sent_messages.address`, `email_sent.address`, the matched replies'
sender and text and the corrections' text are sealed without an index: nothing looks them up.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

S = "responses"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.contacts ADD COLUMN address_bidx text")
    op.execute(f"ALTER TABLE {S}.contacts DROP CONSTRAINT contacts_pkey")
    op.execute(f"CREATE UNIQUE INDEX contacts_address_bidx ON {S}.contacts (channel, address_bidx)")
    op.execute(
        f"CREATE UNIQUE INDEX contacts_plain_address ON {S}.contacts (channel, address) WHERE address_bidx IS NULL"
    )

    op.execute(f"ALTER TABLE {S}.auto_replies ADD COLUMN address_bidx text")
    op.execute(f"DROP INDEX {S}.auto_replies_one_confirmation")
    op.execute(f"DROP INDEX {S}.auto_replies_recent")
    # one opt-out confirmation per number, ever (by its index; by the plaintext for the rows before it)
    op.execute(
        f"""CREATE UNIQUE INDEX auto_replies_one_confirmation ON {S}.auto_replies (channel, address_bidx)
            WHERE purpose = 'opt_out_confirmation'"""
    )
    op.execute(
        f"""CREATE UNIQUE INDEX auto_replies_one_confirmation_plain ON {S}.auto_replies (channel, address)
            WHERE purpose = 'opt_out_confirmation' AND address_bidx IS NULL"""
    )
    op.execute(
        f"CREATE INDEX auto_replies_recent ON {S}.auto_replies (channel, address_bidx, purpose, created_at)"
    )
    op.execute(
        f"""CREATE INDEX auto_replies_recent_plain ON {S}.auto_replies (channel, address, purpose, created_at)
            WHERE address_bidx IS NULL"""
    )


def downgrade() -> None:
    # the indexes and constraints as they were; values sealed since stay sealed (opened by the application)
    for ix in ("auto_replies_recent_plain", "auto_replies_recent", "auto_replies_one_confirmation_plain",
               "auto_replies_one_confirmation"):  # fmt: skip
        op.execute(f"DROP INDEX IF EXISTS {S}.{ix}")
    op.execute(f"ALTER TABLE {S}.auto_replies DROP COLUMN IF EXISTS address_bidx")
    op.execute(
        f"""CREATE UNIQUE INDEX auto_replies_one_confirmation ON {S}.auto_replies (channel, address)
            WHERE purpose = 'opt_out_confirmation'"""
    )
    op.execute(
        f"CREATE INDEX auto_replies_recent ON {S}.auto_replies (channel, address, purpose, created_at)"
    )
    op.execute(f"DROP INDEX IF EXISTS {S}.contacts_plain_address")
    op.execute(f"DROP INDEX IF EXISTS {S}.contacts_address_bidx")
    op.execute(f"ALTER TABLE {S}.contacts DROP COLUMN IF EXISTS address_bidx")
    op.execute(f"ALTER TABLE {S}.contacts ADD PRIMARY KEY (channel, address)")
