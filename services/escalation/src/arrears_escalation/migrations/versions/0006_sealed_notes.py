"""escalation: customers' words and collectors' free text sealed with the account's data key
(arrears_shared.vault): a reply's text in `activity.data`, a note's body (also in its `note.add` audit entry), a
closed case's note (also in its `case.close` audit entry). The timeline and the cases API open them.

No schema change is needed: sealed values are text where plain text was. Rows written before this revision keep
their plaintext (read as it is); nothing is looked up by these values, so no blind index. The columns say so.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "escalation"
_SEALED = "sealed with the account''s data key (pii1:...; plaintext before revision 0006)"


def upgrade() -> None:
    op.execute(f"COMMENT ON COLUMN {S}.activity.data IS 'A reply''s text (message_in) {_SEALED}'")
    op.execute(f"COMMENT ON COLUMN {S}.notes.body IS 'The note, {_SEALED}'")
    op.execute(f"COMMENT ON COLUMN {S}.cases.close_note IS 'The closing note, {_SEALED}'")


def downgrade() -> None:
    for column in ("activity.data", "notes.body", "cases.close_note"):
        op.execute(f"COMMENT ON COLUMN {S}.{column} IS NULL")
