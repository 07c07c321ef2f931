"""DDL for the tables the stream runner needs in every service schema (inbox, outbox).

Called from each service's first Alembic migration so the runner's tables live beside the service's own.
"""

from __future__ import annotations


def runner_tables_ddl(schema: str) -> list[str]:
    s = schema
    return [
        f"""CREATE TABLE {s}.inbox (
            ce_id text PRIMARY KEY,
            topic text NOT NULL,
            consumed_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX inbox_consumed_at ON {s}.inbox (consumed_at)",
        f"""CREATE TABLE {s}.outbox (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            key bytea,
            value bytea NOT NULL,
            headers jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        )""",
        f"CREATE INDEX outbox_unpublished ON {s}.outbox (id) WHERE published_at IS NULL",
        f"CREATE INDEX outbox_published_at ON {s}.outbox (published_at) WHERE published_at IS NOT NULL",
    ]


def create_runner_tables(op: object, schema: str) -> None:
    """Use inside an Alembic `upgrade()`: `create_runner_tables(op, SCHEMA)`."""
    for stmt in runner_tables_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]
