"""DDL for the delivery tables every dispatcher owns in its schema. Call `create_delivery_tables(op, SCHEMA)`
from the dispatcher's first migration, after `create_runner_tables`."""

from __future__ import annotations

STATES = ("queued", "sending", "sent", "failed", "suppressed")

# a delivery `d` covered by its account's withdrawal `w`: issued (segmenter's clock) at or before the stop, or
# without an issue time (older producers) queued before the withdrawal was recorded
WITHDRAWN_SQL = (
    "(CASE WHEN d.payload->>'issued_at' IS NOT NULL"
    " THEN CAST(d.payload->>'issued_at' AS timestamptz) <= w.stopped_at"
    " ELSE d.created_at <= w.recorded_at END)"
)


def delivery_tables_ddl(schema: str) -> list[str]:
    s = schema
    states = ", ".join(f"'{x}'" for x in STATES)
    return [
        f"""CREATE TABLE {s}.deliveries (
            notice_id text PRIMARY KEY,
            account_id text NOT NULL,
            channel text NOT NULL,
            to_address text NOT NULL,
            payload jsonb NOT NULL,
            rendered jsonb,
            priority integer NOT NULL DEFAULT 0,
            state text NOT NULL DEFAULT 'queued' CHECK (state IN ({states})),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            provider_message_id text,
            thread_id text,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX deliveries_due ON {s}.deliveries (state, priority DESC, next_attempt_at)",
        f"CREATE INDEX deliveries_in_doubt ON {s}.deliveries (updated_at) WHERE state = 'sending'",
        f"CREATE INDEX deliveries_account ON {s}.deliveries (account_id)",
        f"""CREATE TABLE {s}.opt_outs (
            account_id text NOT NULL,
            channel text NOT NULL,
            source_reply_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, channel)
        )""",
        f"""CREATE TABLE {s}.rate_limiter (
            name text PRIMARY KEY,
            tat timestamptz NOT NULL DEFAULT now()
        )""",
    ]


def create_delivery_tables(op: object, schema: str) -> None:
    """Use inside an Alembic `upgrade()`: `create_delivery_tables(op, SCHEMA)`."""
    for stmt in delivery_tables_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def delivery_tables_v2_ddl(schema: str) -> list[str]:
    """Second revision: send route (primary / fallback provider), the id of the DLQ record a failed delivery
    was dead-lettered under (only a replay of exactly that record revives it), channels known to be invalid
    per account (permanent failures), and per-day usage of daily quotas."""
    s = schema
    return [
        f"ALTER TABLE {s}.deliveries ADD COLUMN route text",
        f"ALTER TABLE {s}.deliveries ADD COLUMN dlq_id text",
        f"""CREATE TABLE {s}.invalid_channels (
            account_id text NOT NULL,
            channel text NOT NULL,
            address text NOT NULL,
            reason text NOT NULL,
            notice_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, channel, address)
        )""",
        f"""CREATE TABLE {s}.quota_usage (
            name text NOT NULL,
            day date NOT NULL,
            used integer NOT NULL DEFAULT 0,
            PRIMARY KEY (name, day)
        )""",
    ]


def upgrade_delivery_tables_v2(op: object, schema: str) -> None:
    """Use inside the dispatcher's second Alembic revision."""
    for stmt in delivery_tables_v2_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v2(op: object, schema: str) -> None:
    """Undo `upgrade_delivery_tables_v2` (each dispatcher's migration 0002)."""
    for stmt in (
        f"DROP TABLE IF EXISTS {schema}.quota_usage",
        f"DROP TABLE IF EXISTS {schema}.invalid_channels",
        f"ALTER TABLE {schema}.deliveries DROP COLUMN IF EXISTS dlq_id",
        f"ALTER TABLE {schema}.deliveries DROP COLUMN IF EXISTS route",
    ):
        op.execute(stmt)  # type: ignore[attr-defined]


def delivery_tables_v3_ddl(schema: str) -> list[str]:
    """Third revision: daily quotas counted over a rolling 24 hours (Gmail's sending limit is rolling, not
    per UTC day) in per-minute buckets, and route pauses shared by every replica (a provider's "quota used
    up until T" moves all of them to the fallback route, not only the replica that was told)."""
    s = schema
    return [
        f"""CREATE TABLE {s}.quota_window (
            name text NOT NULL,
            bucket timestamptz NOT NULL,
            used integer NOT NULL DEFAULT 0,
            PRIMARY KEY (name, bucket)
        )""",
        f"""CREATE TABLE {s}.route_pauses (
            name text PRIMARY KEY,
            until timestamptz NOT NULL,
            reason text
        )""",
    ]


def upgrade_delivery_tables_v3(op: object, schema: str) -> None:
    for stmt in delivery_tables_v3_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v3(op: object, schema: str) -> None:
    for stmt in (
        f"DROP TABLE IF EXISTS {schema}.route_pauses",
        f"DROP TABLE IF EXISTS {schema}.quota_window",
    ):
        op.execute(stmt)  # type: ignore[attr-defined]


def delivery_tables_v4_ddl(schema: str) -> list[str]:
    """Fourth revision: fail-safe holds. A reply that may be an opt-out the classifier is unsure of pauses
    dunning on that channel for the account until a person decides (a reviewed reply-received). A decided
    hold keeps its row (`released_at`), so a replay of the original reply cannot hold the account again."""
    s = schema
    return [
        f"""CREATE TABLE {s}.contact_holds (
            account_id text NOT NULL,
            channel text NOT NULL,
            source_reply_id text NOT NULL,
            reason text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            released_at timestamptz,
            released_by text,
            PRIMARY KEY (account_id, channel, source_reply_id)
        )""",
        f"CREATE INDEX contact_holds_open ON {s}.contact_holds (account_id, channel) WHERE released_at IS NULL",
    ]


def upgrade_delivery_tables_v4(op: object, schema: str) -> None:
    for stmt in delivery_tables_v4_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v4(op: object, schema: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {schema}.contact_holds")  # type: ignore[attr-defined]


def delivery_tables_v5_ddl(schema: str) -> list[str]:
    """Fifth revision: personal data sealed at rest with the account's key (`sealing`). Addresses, notices and
    rendered messages change only in content (sealed text in the same columns); `invalid_channels` is looked up
    by `address_bidx`, a blind index of the channel and address (erasure empties it). Rows written before keep
    their plaintext address and no index and are matched by the address (no backfill). The unique index
    keeps one row per account, channel and address (the sealed address differs at every write)."""
    s = schema
    return [
        f"ALTER TABLE {s}.invalid_channels ADD COLUMN address_bidx text",
        f"CREATE UNIQUE INDEX invalid_channels_address_bidx ON {s}.invalid_channels"
        " (account_id, channel, address_bidx)",
    ]


def upgrade_delivery_tables_v5(op: object, schema: str) -> None:
    for stmt in delivery_tables_v5_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v5(op: object, schema: str) -> None:
    """Drops the blind index; what was sealed stays sealed (an older release reads it as an unknown address)."""
    for stmt in (
        f"DROP INDEX IF EXISTS {schema}.invalid_channels_address_bidx",
        f"ALTER TABLE {schema}.invalid_channels DROP COLUMN IF EXISTS address_bidx",
    ):
        op.execute(stmt)  # type: ignore[attr-defined]


def delivery_tables_v6_ddl(schema: str) -> list[str]:
    """Sixth revision: `account_stops`, the latest moment each account's dunning was stopped at its source (paid
    in full, closed or removed; `account-changed`). A queued dunning notice planned from an older state of the
    account is suppressed instead of sent (`checks.stopped`): a payment stops what is already queued within one
    hop, however long the queue."""
    s = schema
    return [
        f"""CREATE TABLE {s}.account_stops (
            account_id text PRIMARY KEY,
            stopped_as_of timestamptz NOT NULL,
            reason text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )""",
    ]


def upgrade_delivery_tables_v6(op: object, schema: str) -> None:
    for stmt in delivery_tables_v6_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v6(op: object, schema: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {schema}.account_stops")  # type: ignore[attr-defined]


def delivery_tables_v7_ddl(schema: str) -> list[str]:
    """Seventh revision: `withdrawals`, the latest moment the segmenter withdrew what this dispatcher holds
    for an account (`DunningStopped`: a settlement paid, a person's do-not-contact, a dispute, a pause). A
    collection notice issued at or before `stopped_at` (the segmenter's clock, `NoticeDue.issued_at`) is
    suppressed (`checks.withdrawn`); one issued after it (the stop was lifted and the segmenter planned
    again) goes. A notice without `issued_at` compares the moment it was queued with `recorded_at`."""
    s = schema
    return [
        f"""CREATE TABLE {s}.withdrawals (
            account_id text PRIMARY KEY,
            stopped_at timestamptz NOT NULL,
            reason text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )""",
    ]


def upgrade_delivery_tables_v7(op: object, schema: str) -> None:
    for stmt in delivery_tables_v7_ddl(schema):
        op.execute(stmt)  # type: ignore[attr-defined]


def downgrade_delivery_tables_v7(op: object, schema: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {schema}.withdrawals")  # type: ignore[attr-defined]
