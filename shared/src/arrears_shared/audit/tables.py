"""DDL of the audit log, for services' migrations: `create_audit_log(op, schema)` / `drop_audit_log`.

`harden_audit_log(schema)` is the part of that DDL the shared library keeps current on every schema that has
an audit log; the migration environment applies it after each run of a service's migrations (db/migrate.py),
so tables created by older revisions get it too: the `key_id` column of the keyed chain, a trigger refusing
TRUNCATE (UPDATE and DELETE are refused row by row), and no UPDATE, DELETE or TRUNCATE privilege for anyone
but the table's owner (the service's runtime role keeps INSERT and SELECT; db/roles.py).
"""

from __future__ import annotations

from typing import Any


def create_audit_log(op: Any, schema: str) -> None:
    s = schema
    op.execute(
        f"""CREATE TABLE {s}.audit_log (
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
            hash text NOT NULL,
            request_id text
        )"""
    )
    op.execute(f"CREATE INDEX audit_log_entity ON {s}.audit_log (entity_id)")
    op.execute(
        f"""CREATE FUNCTION {s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
        END $$"""
    )
    op.execute(
        f"""CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {s}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_append_only()"""
    )
    for stmt in harden_audit_log(s):
        op.execute(stmt)


def harden_audit_log(schema: str) -> list[str]:
    """Idempotent statements (run as the table's owner) bringing an audit log to the current shape."""
    s = schema
    return [
        f"ALTER TABLE {s}.audit_log ADD COLUMN IF NOT EXISTS key_id text",
        f"""CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {s}.audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_log_append_only()""",
        f"""DO $$
        DECLARE g oid;
        BEGIN
            FOR g IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
                     WHERE c.oid = '{s}.audit_log'::regclass AND a.grantee <> c.relowner
                       AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
            LOOP
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON {s}.audit_log FROM %s',
                               CASE WHEN g = 0 THEN 'PUBLIC' ELSE g::regrole::text END);
            END LOOP;
        END $$""",
    ]


def has_audit_log(schema: str) -> str:
    """SQL answering whether `schema` has an audit log (one boolean)."""
    return f"SELECT to_regclass('{schema}.audit_log') IS NOT NULL"


def drop_audit_log(op: Any, schema: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {schema}.audit_log")
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.audit_log_append_only()")
