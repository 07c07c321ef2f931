"""segmenter: policy versions, campaigns, approval gate, segments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "segmenter"


def upgrade() -> None:
    op.execute(f"""
        ALTER TABLE {S}.accounts
            ADD COLUMN complex boolean NOT NULL DEFAULT false,
            ADD COLUMN risk_score integer NOT NULL DEFAULT 0,
            ADD COLUMN risk_override integer,
            ADD COLUMN partial_payments integer NOT NULL DEFAULT 0,
            ADD COLUMN broken_promises integer NOT NULL DEFAULT 0,
            ADD COLUMN balance_band text NOT NULL DEFAULT 'low',
            ADD COLUMN history text NOT NULL DEFAULT 'clean',
            ADD COLUMN segment text NOT NULL DEFAULT ''""")
    op.execute(f"ALTER TABLE {S}.timers DROP CONSTRAINT IF EXISTS timers_state_check")
    op.execute(f"""
        ALTER TABLE {S}.timers
            ADD CONSTRAINT timers_state_check
                CHECK (state IN ('pending', 'held', 'fired', 'cancelled', 'suppressed')),
            ADD COLUMN policy_id text,
            ADD COLUMN policy_version integer,
            ADD COLUMN approved_by text,
            ADD COLUMN approved_at timestamptz""")
    op.execute(f"CREATE INDEX timers_held ON {S}.timers (updated_at) WHERE state = 'held'")
    op.execute(f"ALTER TABLE {S}.notices ADD COLUMN campaign_id text")
    op.execute(f"""
        CREATE TABLE {S}.policies (
            policy_id text NOT NULL,
            version integer NOT NULL,
            body jsonb NOT NULL,
            source text NOT NULL DEFAULT '',
            active boolean NOT NULL DEFAULT false,
            loaded_by text NOT NULL DEFAULT 'system',
            loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (policy_id, version)
        )""")
    op.execute(f"CREATE UNIQUE INDEX policies_one_active ON {S}.policies ((true)) WHERE active")
    op.execute(f"""
        CREATE TABLE {S}.campaigns (
            campaign_id text PRIMARY KEY,
            name text NOT NULL,
            owner text NOT NULL,
            goal text NOT NULL DEFAULT '',
            criteria jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            priority integer NOT NULL DEFAULT 0,
            status text NOT NULL CHECK (status IN ('planned', 'active', 'completed', 'cancelled')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute(f"""
        INSERT INTO {S}.campaigns (campaign_id, name, owner, goal, criteria, priority, status)
        VALUES ('baseline', 'Baseline dunning', 'system',
                'Every account the policy reaches that no other active campaign targets', '{{}}', -1000,
                'active')""")


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {S}.campaigns")
    op.execute(f"DROP TABLE IF EXISTS {S}.policies")
    op.execute(f"ALTER TABLE {S}.notices DROP COLUMN IF EXISTS campaign_id")
    op.execute(f"DROP INDEX IF EXISTS {S}.timers_held")
    op.execute(f"""
        ALTER TABLE {S}.timers DROP COLUMN IF EXISTS policy_id, DROP COLUMN IF EXISTS policy_version,
            DROP COLUMN IF EXISTS approved_by, DROP COLUMN IF EXISTS approved_at""")
    op.execute(f"""
        ALTER TABLE {S}.accounts DROP COLUMN IF EXISTS complex, DROP COLUMN IF EXISTS risk_score,
            DROP COLUMN IF EXISTS risk_override, DROP COLUMN IF EXISTS partial_payments,
            DROP COLUMN IF EXISTS broken_promises, DROP COLUMN IF EXISTS balance_band,
            DROP COLUMN IF EXISTS history, DROP COLUMN IF EXISTS segment""")
