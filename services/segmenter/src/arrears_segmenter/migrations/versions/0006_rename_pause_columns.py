"""segmenter: accounts columns named for what they hold: `paused_until` (the promised day of a promise-to-pay
hold, a date) -> `promise_hold_until`, `pause_until` (end of a pause a person set, a timestamp) ->
`manual_pause_until`

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "segmenter"

RENAMES = (("paused_until", "promise_hold_until"), ("pause_until", "manual_pause_until"))


def upgrade() -> None:
    for old, new in RENAMES:
        op.execute(f"ALTER TABLE {S}.accounts RENAME COLUMN {old} TO {new}")


def downgrade() -> None:
    for old, new in RENAMES:
        op.execute(f"ALTER TABLE {S}.accounts RENAME COLUMN {new} TO {old}")
