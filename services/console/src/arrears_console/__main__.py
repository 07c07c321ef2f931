"""`python -m arrears_console`: read models over every topic, the ops API and the web UI."""

from __future__ import annotations

from typing import cast

from arrears_shared.audit.views import audit_router
from arrears_shared.auth.security_views import security_router
from arrears_shared.auth.views import api_keys_router
from arrears_shared.control.halts import publish_loop as halts_gauge_loop
from arrears_shared.control.views import halts_router
from arrears_shared.service import Consumer, Context, ServiceDefinition
from arrears_shared.service import main as run

from .dlq.reader import dlq_loop
from .exports import views as exports
from .readmodels.aging_history import aging_snapshot_loop
from .readmodels.handlers import handle_events
from .readmodels.views import api_router
from .settings import ConsoleSettings
from .web.pages import (
    accounts,
    aging,
    approvals,
    campaigns,
    kpis,
    notifications,
    ops,
    policies,
    reports,
    teams,
    work,
)
from .web.upstream import Upstreams
from .web.views import web_router


async def start_upstreams(ctx: Context) -> None:
    """The client the pages use to call the owning services as the signed-in person."""
    ctx.extra["upstreams"] = Upstreams.from_settings(cast(ConsoleSettings, ctx.settings))


def definition(settings: ConsoleSettings | None = None) -> ServiceDefinition:
    settings = settings or ConsoleSettings(service_name="console")
    return ServiceDefinition(
        name="console",
        settings=settings,
        consumers=[Consumer(handle_events)],
        routers=[
            api_router,
            web_router,
            work.router,
            accounts.router,
            approvals.router,
            teams.router,
            notifications.router,
            aging.router,
            kpis.router,
            reports.router,
            campaigns.router,
            policies.router,
            ops.router,
            exports.router,
            api_keys_router,
            halts_router,
            security_router,
            audit_router,
        ],
        on_start=start_upstreams,
        loops=[dlq_loop, aging_snapshot_loop, halts_gauge_loop],
        login_path="/login",
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
