"""segmenter: personal data sealed at rest with the account's key (arrears_shared.vault): the customer's name,
each channel's address, a pause's reason and the decision log's reasons hold `pii1:` ciphertext.

No column changes type and none needs a blind index (the segmenter never looks an account up by name or
address: it compares an incoming address with the opened stored one). This revision records on each column
what it holds. Rows written before it keep their plaintext, read as it is, until the account's next write
seals them: no backfill.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

S = "segmenter"

SEALED = {
    "accounts.customer_name": "the customer's name",
    "accounts.pause_reason": "why a person paused the account",
    "accounts.send_now": "a pending send-now (its `reason`)",
    "account_channels.address": "the channel's address (E.164 phone or email)",
    "decisions.reason": "why the decision was taken (may quote a person's note or a provider's error)",
}


def upgrade() -> None:
    for column, what in SEALED.items():
        note = f"{what}: sealed with the account's key (pii1:...); plaintext only in rows written before 0008"
        quoted = note.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN {S}.{column} IS '{quoted}'")


def downgrade() -> None:
    for column in SEALED:
        op.execute(f"COMMENT ON COLUMN {S}.{column} IS NULL")
