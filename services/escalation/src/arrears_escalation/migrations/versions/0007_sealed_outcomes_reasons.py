"""escalation: more of people's free text sealed with the account's data key (arrears_shared.vault): a task's
outcome (`tasks.outcome`, also in its `task.complete` audit entry) and the reason an operator gives for an
override or a task reassignment (`audit_log.reason`, and `after.reason` of an `override.*` entry). The tasks
API and the timeline open them.

No schema change is needed: sealed values are text where plain text was. Rows written before this revision keep
their plaintext (read as it is); nothing is looked up by these values, so no blind index. The columns say so.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = "escalation"
_SEALED = "sealed with the account''s data key (pii1:...; plaintext before revision 0007)"


def upgrade() -> None:
    op.execute(f"COMMENT ON COLUMN {S}.tasks.outcome IS 'The outcome a person wrote, {_SEALED}'")
    op.execute(
        f"COMMENT ON COLUMN {S}.audit_log.reason IS 'The reason a person gave (override, reassignment), {_SEALED}'"
    )


def downgrade() -> None:
    for column in ("tasks.outcome", "audit_log.reason"):
        op.execute(f"COMMENT ON COLUMN {S}.{column} IS NULL")
