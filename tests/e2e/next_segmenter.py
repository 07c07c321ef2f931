"""The next release of the segmenter, for the rolling-upgrade test (`test_rolling_upgrade.py`).

Today's segmenter (its own `ServiceDefinition`, service host, consumer and migrations) plus what an additive
release adds, written the way the release would write it:

- an **expand** migration on top of the segmenter's current head: a nullable column
  `accounts.preferred_language` and a table `account_languages` (one row per event that carried a language).
  The running release keeps working with both present: it names its columns;
- a new **optional field** on `arrears.account.changed.v1`, `preferred_language` (the model below: the next
  `AccountChanged`), which this release reads and stores in the same transaction as the rest of the event.

Run as its own process, exactly like `python -m arrears_segmenter` (same environment):

    python tests/e2e/next_segmenter.py MIGRATIONS_DIR

`MIGRATIONS_DIR` is an empty directory that receives the revision file (its `down_revision` is the
segmenter's head at start, so the test keeps working when the segmenter gains migrations).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from arrears_segmenter.__main__ import definition as current_definition
from arrears_shared import events
from arrears_shared.cloudevents import Envelope
from arrears_shared.db import migrate
from arrears_shared.service import Consumer, ServiceDefinition, main
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction
from pydantic import Field
from sqlalchemy import text

SERVICE = "segmenter"
SCHEMA = "segmenter"
REVISION = "next_0001_preferred_language"

MIGRATION = '''"""segmenter (next release): expand step for `preferred_language`

Revision ID: {revision}
Revises: {down}
"""

from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE {schema}.accounts ADD COLUMN preferred_language text")
    op.execute(
        "CREATE TABLE {schema}.account_languages (ce_id text PRIMARY KEY, account_id text NOT NULL, "
        "preferred_language text NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE {schema}.account_languages")
    op.execute("ALTER TABLE {schema}.accounts DROP COLUMN preferred_language")
'''


class AccountChanged(events.AccountChanged):
    """`arrears.account.changed.v1` of the next release: one more optional field, same type."""

    preferred_language: str | None = Field(None, description="BCP 47 tag the debtor prefers (new, optional)")


def register_migration(directory: Path) -> None:
    """Write the expand revision on top of the segmenter's head and add `directory` to the segmenter's
    Alembic version locations (the host migrates to the new head as it starts)."""
    plain = migrate.alembic_config

    def with_next(url: str, service: str) -> Config:
        cfg = plain(url, service)
        if service == SERVICE:
            versions = f"{cfg.get_main_option('script_location')}/versions"
            cfg.set_main_option("version_locations", f"{versions} {directory}")
        return cfg

    released = ScriptDirectory.from_config(plain("postgresql://unused", SERVICE)).get_current_head()
    (directory / f"{REVISION}.py").write_text(
        MIGRATION.format(revision=REVISION, down=released, schema=SCHEMA)
    )
    migrate.alembic_config = with_next  # `upgrade` looks it up at call time


def store_languages(handler: BatchHandler) -> BatchHandler:
    """The released handler, then (same transaction) the new field of every event that carries it."""

    async def handle(envelopes: Sequence[Envelope], tx: Transaction) -> None:
        await handler(envelopes, tx)
        rows = [
            {"i": e.id, "a": e.data.account_id, "l": e.data.preferred_language}
            for e in envelopes
            if isinstance(e.data, AccountChanged) and e.data.preferred_language
        ]
        if rows:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {SCHEMA}.account_languages (ce_id, account_id, preferred_language) "
                    "VALUES (:i, :a, :l)"
                ),
                rows,
            )
            await tx.conn.execute(
                text(f"UPDATE {SCHEMA}.accounts SET preferred_language = :l WHERE account_id = :a"), rows
            )

    return handle


def definition() -> ServiceDefinition:
    d = current_definition()
    d.consumers = [Consumer(store_languages(c.handler), c.topics, c.group) for c in d.consumers]
    return d


if __name__ == "__main__":
    register_migration(Path(sys.argv[1]))
    events.BY_CE_TYPE[AccountChanged.ce_type] = AccountChanged  # the decoder's type map (next release)
    main(definition)
