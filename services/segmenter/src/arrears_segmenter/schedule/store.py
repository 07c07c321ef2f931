"""Policy versions in Postgres: exactly one active version; loading a new one re-plans future steps only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from arrears_shared import paging
from sqlalchemy import Boolean, Column, DateTime, Integer, Table, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.models import accounts, metadata
from ..timers.models import timers
from .models import Policy, PolicyError

policies = Table(
    "policies",
    metadata,
    Column("policy_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", JSONB, nullable=False),
    Column("source", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("loaded_by", Text, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
)

# (id, version) -> (body, parsed). The body is compared too: a version installed in a transaction that was
# rolled back (a simulation, a failed load) must not shadow a different document stored later under the
# same number.
_cache: dict[tuple[str, int], tuple[Any, Policy]] = {}


def _parse(body: Any) -> Policy:
    data = json.loads(body) if isinstance(body, str) else body
    key = (data["id"], data["version"])
    hit = _cache.get(key)
    if hit is None or hit[0] != data:
        hit = (data, Policy.model_validate(data))
        _cache[key] = hit
    return hit[1]


async def active(conn: AsyncConnection, bootstrap: Policy) -> Policy:
    """The active policy; the first caller on an empty table installs `bootstrap` (the packaged YAML)."""
    row = (await conn.execute(select(policies.c.body).where(policies.c.active))).first()
    if row is not None:
        return _parse(row.body)
    await conn.execute(
        insert(policies)
        .values(
            policy_id=bootstrap.id,
            version=bootstrap.version,
            body=bootstrap.model_dump(mode="json"),
            source="packaged",
            active=True,
            loaded_by="system",
            loaded_at=datetime.now().astimezone(),
        )
        .on_conflict_do_nothing()
    )
    row = (await conn.execute(select(policies.c.body).where(policies.c.active))).first()
    return _parse(row.body) if row is not None else bootstrap


async def version(conn: AsyncConnection, policy_id: str, ver: int) -> Policy | None:
    row = (
        await conn.execute(
            select(policies.c.body).where(policies.c.policy_id == policy_id, policies.c.version == ver)
        )
    ).first()
    return _parse(row.body) if row is not None else None


async def latest_version(conn: AsyncConnection, policy_id: str) -> int | None:
    q = text(f"SELECT max(version) FROM {policies.schema}.policies WHERE policy_id = :p")
    return (await conn.execute(q, {"p": policy_id})).scalar()


async def history(
    conn: AsyncConnection, limit: int = 100, cursor: str | None = None
) -> tuple[list[Any], str | None]:
    """One page of loaded policies, newest first, and the cursor of the next page."""
    c = policies.c
    q = paging.keyset(
        select(c.policy_id, c.version, c.active, c.loaded_by, c.loaded_at, c.body),
        (c.loaded_at, c.version, c.policy_id),
        cursor,
        limit,
    )
    return paging.page((await conn.execute(q)).all(), limit, lambda r: (r.loaded_at, r.version, r.policy_id))


async def install(
    conn: AsyncConnection, policy: Policy, source: str, actor: str, bootstrap: Policy, now: datetime
) -> Policy:
    """Make `policy` the active version. Its version must be higher than every stored version of the same
    id (notice ids embed it, so a reused number could collide). Caller re-plans afterwards."""
    await active(conn, bootstrap)  # the packaged version counts as stored
    await conn.execute(text(f"LOCK TABLE {policies.schema}.policies IN SHARE ROW EXCLUSIVE MODE"))
    top = (
        await conn.execute(
            text(f"SELECT max(version) FROM {policies.schema}.policies WHERE policy_id = :p"),
            {"p": policy.id},
        )
    ).scalar()
    if top is not None and policy.version <= top:
        raise PolicyError(
            [
                {
                    "loc": "version",
                    "msg": f"must be higher than {top}, the latest stored version of {policy.id!r}",
                }
            ]
        )
    await conn.execute(policies.update().where(policies.c.active).values(active=False))
    await conn.execute(
        insert(policies).values(
            policy_id=policy.id,
            version=policy.version,
            body=policy.model_dump(mode="json"),
            source=source,
            active=True,
            loaded_by=actor,
            loaded_at=now,
        )
    )
    return policy


async def accounts_to_replan(conn: AsyncConnection) -> list[str]:
    """Every account a new policy version may change: active ones, and any with a timer still open."""
    rows = await conn.execute(
        select(accounts.c.account_id)
        .where(accounts.c.known, ~accounts.c.removed, accounts.c.balance_minor > 0)
        .union(select(timers.c.account_id).where(timers.c.state.in_(("pending", "held"))))
    )
    return sorted(r[0] for r in rows)
