"""escalation: tasks (priority, team, assignee, due date, SLA), round-robin cursors, promises to pay,
case notes, API keys and the hash-chained audit log.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "escalation"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {S}.cases ADD COLUMN rule_id text")
    op.execute(f"ALTER TABLE {S}.cases ADD COLUMN due_at timestamptz")
    op.execute(f"""
        CREATE TABLE {S}.tasks (
            task_id text PRIMARY KEY,
            case_id text REFERENCES {S}.cases (case_id),
            account_id text NOT NULL,
            kind text NOT NULL,
            rule_id text,
            priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'critical')),
            team text NOT NULL,
            assignee text,
            status text NOT NULL CHECK (status IN ('open', 'done', 'cancelled')),
            due_at timestamptz NOT NULL,
            sla_due_at timestamptz NOT NULL,
            sla_state text NOT NULL DEFAULT 'ok' CHECK (sla_state IN ('ok', 'breached', 'escalated')),
            detail text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL,
            completed_at timestamptz,
            outcome text
        )""")
    op.execute(f"CREATE INDEX tasks_open_sla ON {S}.tasks (sla_due_at) WHERE status = 'open'")
    op.execute(f"CREATE INDEX tasks_account ON {S}.tasks (account_id, created_at)")
    op.execute(f"CREATE INDEX tasks_assignee ON {S}.tasks (assignee, status)")
    op.execute(f"CREATE TABLE {S}.assign_cursor (team text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
    op.execute(f"""
        CREATE TABLE {S}.promises (
            promise_id text PRIMARY KEY,
            account_id text NOT NULL,
            amount_minor bigint,
            due_date date NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'kept', 'broken', 'superseded')),
            made_at timestamptz NOT NULL,
            settled_at timestamptz,
            paid_minor bigint,
            on_time boolean,
            channel text,
            collector text
        )""")
    op.execute(f"CREATE INDEX promises_pending ON {S}.promises (due_date) WHERE status = 'pending'")
    op.execute(f"CREATE INDEX promises_account ON {S}.promises (account_id, made_at)")
    op.execute(f"""
        CREATE TABLE {S}.notes (
            note_id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            case_id text,
            author text NOT NULL,
            body text NOT NULL,
            created_at timestamptz NOT NULL
        )""")
    op.execute(f"CREATE INDEX notes_account ON {S}.notes (account_id, created_at)")
    op.execute(f"""
        CREATE TABLE {S}.api_keys (
            key_id text PRIMARY KEY,
            name text NOT NULL UNIQUE,
            role text NOT NULL CHECK (role IN ('viewer', 'agent', 'supervisor', 'admin')),
            team text,
            key_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )""")
    # append-only: each row carries the hash of the previous one; UPDATE/DELETE are refused by a trigger
    op.execute(f"""
        CREATE TABLE {S}.audit_log (
            seq bigint PRIMARY KEY,
            at timestamptz NOT NULL,
            actor text NOT NULL,
            role text NOT NULL,
            action text NOT NULL,
            entity text NOT NULL,
            entity_id text NOT NULL,
            before jsonb,
            after jsonb,
            reason text NOT NULL DEFAULT '',
            prev_hash text NOT NULL,
            hash text NOT NULL
        )""")
    op.execute(f"""
        CREATE FUNCTION {S}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
        END $$""")
    op.execute(f"""
        CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {S}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {S}.audit_log_append_only()""")
    op.execute(f"""
        CREATE TABLE {S}.metric_snapshots (
            day date NOT NULL,
            scope text NOT NULL,
            scope_id text NOT NULL,
            metric text NOT NULL,
            value double precision,
            numerator double precision,
            denominator double precision,
            PRIMARY KEY (day, scope, scope_id, metric)
        )""")


def downgrade() -> None:
    for t in ("metric_snapshots", "audit_log", "api_keys", "notes", "promises", "assign_cursor", "tasks"):
        op.execute(f"DROP TABLE IF EXISTS {S}.{t}")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.audit_log_append_only()")
    op.execute(f"ALTER TABLE {S}.cases DROP COLUMN rule_id, DROP COLUMN due_at")
