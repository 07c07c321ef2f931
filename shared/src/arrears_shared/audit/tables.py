"""DDL of the audit log, for services' migrations: `create_audit_log(op, schema)` / `drop_audit_log`."""

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


def drop_audit_log(op: Any, schema: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {schema}.audit_log")
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.audit_log_append_only()")
