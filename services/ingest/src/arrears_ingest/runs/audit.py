"""Audit entries of runs people start (sheet now, uploads): who, and what the run did."""

from __future__ import annotations

from arrears_shared.audit import record
from arrears_shared.auth import Principal
from arrears_shared.service import Context

from .models import RunSummary

_COUNTS = ("status", "rows", "accepted", "rejected", "unchanged", "created", "updated", "removed")


async def audit_run(
    ctx: Context, who: Principal, action: str, summary: RunSummary, **details: object
) -> None:
    async with ctx.transaction() as tx:
        after = {k: getattr(summary, k, None) for k in _COUNTS} | details
        await record(tx.conn, ctx.schema, who, action, "ingest_run", summary.id, after=after)
