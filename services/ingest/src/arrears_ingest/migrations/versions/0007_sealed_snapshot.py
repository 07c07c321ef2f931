"""ingest: the snapshot's personal strings are sealed with the account's data key (arrears_shared.vault); a
reject's value masks free text and any email address or phone number in it.

No schema change is needed: sealed values are strings in the same JSON fields. Rows written before this
revision keep their plaintext (read as it is) until the account's next change rewrites them sealed; the
rejects are replaced by each run of their source. The columns say so.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    op.execute(
        f"COMMENT ON COLUMN {SCHEMA}.snapshot.data IS 'The normalised row; customer_name, phone, email, notes "
        "and contacts.*.address sealed with the account''s data key (pii1:...; plaintext before revision 0007)'"
    )
    op.execute(
        f"COMMENT ON COLUMN {SCHEMA}.snapshot.content_hash IS 'Unkeyed SHA-256 of the account''s event fields "
        "(personal ones included): change detection only'"
    )
    op.execute(
        f"COMMENT ON COLUMN {SCHEMA}.rejects.value IS 'The offending cell, masked (validation.parse.mask) and "
        "truncated'"
    )


def downgrade() -> None:
    for column in ("snapshot.data", "snapshot.content_hash", "rejects.value"):
        op.execute(f"COMMENT ON COLUMN {SCHEMA}.{column} IS NULL")
