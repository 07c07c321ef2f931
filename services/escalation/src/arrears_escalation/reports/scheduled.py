"""The reports loop: every `every_s`, generate the reports whose time has come (once per period, whichever
replica gets there first) and e-mail those waiting. Its own loop, not the timer tick: a report is built
from a month of snapshots and the e-mail is a provider call, neither belongs in the tick's transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from arrears_shared.service import Context

from ..collection.targets import KpiTarget
from ..deps import Deps
from .models import ReportsConfig
from .service import deliver, generate_due

log = logging.getLogger(__name__)


def make_reports_loop(
    deps: Deps, cfg: ReportsConfig, targets: list[KpiTarget], every_s: float = 60.0
) -> Callable[[Context], Awaitable[None]]:
    """Refuses to start with a distribution list but no mailbox to send from (a silent no-email would look
    like a report nobody needed)."""
    if (
        cfg.enabled
        and cfg.recipients
        and not (cfg.sender and (cfg.gmail_token or cfg.gmail_credentials_file))
    ):
        raise ValueError(
            "ARREARS_ESCALATION_REPORTS_RECIPIENTS needs ARREARS_ESCALATION_NOTIFY_SENDER and "
            "ARREARS_ESCALATION_NOTIFY_GMAIL_TOKEN or ARREARS_ESCALATION_NOTIFY_GMAIL_CREDENTIALS_FILE"
        )

    async def reports_loop(ctx: Context) -> None:
        while True:
            try:
                now = deps.clock.now()
                await generate_due(ctx.engine, cfg, targets, now)
                await deliver(ctx.engine, cfg, now)
            except Exception:
                log.exception("reports loop failed; retrying next round")
            if not await ctx.sleep(every_s):
                return

    return reports_loop
