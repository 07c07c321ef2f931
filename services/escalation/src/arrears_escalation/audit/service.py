"""Escalation's audit log: the shared hash-chained log (arrears_shared.audit) in the `escalation` schema."""

from __future__ import annotations

from typing import Any

from arrears_shared.audit import chain
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA


async def append(conn: AsyncConnection, **entry: Any) -> int:
    """Append one entry inside the caller's transaction (see arrears_shared.audit.chain.append)."""
    return await chain.append(conn, SCHEMA, **entry)
