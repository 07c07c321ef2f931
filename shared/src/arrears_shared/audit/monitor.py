"""The hourly check of a service's audit chain, and the head it publishes outside the database.

Every `ARREARS_AUDIT_CHECK_INTERVAL_S` (1 h) one replica of each service (a transaction-scoped advisory lock;
the others skip that round) verifies its whole chain (an HMAC per entry: cheap for a log of human actions),
with the head it verified last as anchor, so a truncated or rewritten tail is caught too. It
sets `arrears_audit_chain_ok{service}` (1/0), `arrears_audit_chain_verified_seq` and
`arrears_audit_chain_last_check_timestamp_seconds`, which the `ArrearsAuditChainBroken` and
`ArrearsAuditChainCheckStale` alerts watch, and logs the verified head (`audit chain head`, with service,
seq and hash) so that the log pipeline keeps a copy of every head outside the database; any of them can be
passed back to `arrears audit verify --anchor`. A failed check logs the problems (no entry content).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..settings import AuditSettings
from .chain import VerifyReport, verify
from .keyring import Keyring
from .tables import has_audit_log

if TYPE_CHECKING:
    from ..service import Context

log = logging.getLogger(__name__)

CHAIN_OK = Gauge(
    "arrears_audit_chain_ok",
    "1 when the audit chain verified at the last hourly check, 0 when not",
    ["service"],
)
VERIFIED_SEQ = Gauge("arrears_audit_chain_verified_seq", "Newest audit entry verified", ["service"])
LAST_CHECK = Gauge(
    "arrears_audit_chain_last_check_timestamp_seconds", "When the audit chain was last checked", ["service"]
)


@dataclass
class ChainCheck:
    """One service's check; keeps the head it verified last between rounds."""

    engine: AsyncEngine
    service: str
    schema: str
    ring: Keyring | None = None
    verified: tuple[int, str] | None = None

    async def run(self) -> VerifyReport | None:
        """One round; None when another replica holds the round's lock."""
        async with self.engine.begin() as conn:
            lock = f"arrears-audit-check-{self.schema}"
            if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": lock}):
                return None
            if not await conn.scalar(text(has_audit_log(self.schema))):
                report = VerifyReport(schema=self.schema)
            else:
                report = await verify(conn, self.schema, self.verified, ring=self.ring)
        self._publish(report)
        return report

    def _publish(self, report: VerifyReport) -> None:
        LAST_CHECK.labels(self.service).set(time.time())
        CHAIN_OK.labels(self.service).set(1 if report.ok else 0)
        if not report.ok:
            self.verified = None  # the next round reports what is wrong then, not this stale anchor
            log.error(
                "audit chain verification FAILED",
                extra={"service": self.service, "problems": report.problems[:20]},
            )
            return
        self.verified = (report.head_seq, report.head_hash)
        VERIFIED_SEQ.labels(self.service).set(report.head_seq)
        log.info(
            "audit chain head",
            extra={"service": self.service, "seq": report.head_seq, "head": report.head_hash},
        )


async def audit_chain_loop(ctx: Context) -> None:
    """Background loop for the service host: check the chain every interval until the service stops."""
    check = ChainCheck(ctx.engine, ctx.service, ctx.schema)
    interval = AuditSettings().audit_check_interval_s
    while True:
        try:
            await check.run()
        except Exception as e:  # the database may be down: the stale-check alert covers a long outage
            log.warning("audit chain check could not run", extra={"error": type(e).__name__})
        if not await ctx.sleep(interval):
            return
