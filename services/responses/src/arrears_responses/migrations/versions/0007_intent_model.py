"""responses: trained intent models (versioned, one active, each with its metrics and the retrain gate's
decision), what the classifier said beyond the intent (suggested intent, review / fail-safe flags, model
version, promise currency and instalment plan), a person's decision on a reply, and the debtor's time zone
and currency on contacts (promise dates resolve in the debtor's time zone).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = "responses"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.contacts ADD COLUMN timezone text, ADD COLUMN currency text")
    op.execute(f"CREATE INDEX contacts_account ON {S}.contacts (account_id, sent_at)")
    op.execute(
        f"""ALTER TABLE {S}.replies
            ADD COLUMN suggested_intent text,
            ADD COLUMN needs_review boolean NOT NULL DEFAULT false,
            ADD COLUMN possible_opt_out boolean NOT NULL DEFAULT false,
            ADD COLUMN model_version text,
            ADD COLUMN promise_currency text,
            ADD COLUMN promise_plan_every text,
            ADD COLUMN reviewed_by text,
            ADD COLUMN reviewed_at timestamptz"""
    )
    op.execute(
        f"CREATE INDEX replies_review ON {S}.replies (received_at) WHERE needs_review AND reviewed_by IS NULL"
    )
    op.execute(
        f"""CREATE TABLE {S}.intent_models (
            version text PRIMARY KEY,
            status text NOT NULL CHECK (status IN ('active', 'retired', 'rejected')),
            source text NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz,
            decision text NOT NULL,
            metrics jsonb NOT NULL,
            baseline jsonb,
            train_size integer NOT NULL,
            corrections integer NOT NULL DEFAULT 0,
            corpus_sha256 text NOT NULL,
            features_sha256 text NOT NULL,
            trained_at timestamptz NOT NULL,
            artifact bytea NOT NULL
        )"""
    )
    op.execute(
        f"CREATE UNIQUE INDEX intent_models_one_active ON {S}.intent_models ((true)) WHERE status = 'active'"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.intent_models")
    op.execute(f"DROP INDEX IF EXISTS {S}.replies_review")
    op.execute(
        f"""ALTER TABLE {S}.replies DROP COLUMN IF EXISTS suggested_intent, DROP COLUMN IF EXISTS needs_review,
            DROP COLUMN IF EXISTS possible_opt_out, DROP COLUMN IF EXISTS model_version,
            DROP COLUMN IF EXISTS promise_currency, DROP COLUMN IF EXISTS promise_plan_every,
            DROP COLUMN IF EXISTS reviewed_by, DROP COLUMN IF EXISTS reviewed_at"""
    )
    op.execute(f"DROP INDEX IF EXISTS {S}.contacts_account")
    op.execute(f"ALTER TABLE {S}.contacts DROP COLUMN IF EXISTS timezone, DROP COLUMN IF EXISTS currency")
