"""`python -m arrears_escalation`: cases from replies and unanswered final notices."""

from __future__ import annotations

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .cases.handlers import make_handler
from .cases.scheduled import make_timer_loop
from .cases.views import make_router
from .collection.views import make_router as collection_router
from .contacts.views import make_router as contacts_router
from .deps import Deps
from .notifications.mailer import mailer_loops
from .notifications.views import make_router as notifications_router
from .offers.views import make_router as offers_router
from .overrides.views import make_router as overrides_router
from .reports.scheduled import make_reports_loop
from .reports.views import make_router as reports_router
from .settings import EscalationSettings
from .tasks.views import make_router as tasks_router
from .teams.views import make_router as teams_router
from .timeline.views import make_router as timeline_router


def definition(settings: EscalationSettings | None = None, deps: Deps | None = None) -> ServiceDefinition:
    settings = settings or EscalationSettings(service_name="escalation")
    deps = deps or Deps.from_settings(settings)
    return ServiceDefinition(
        name="escalation",
        settings=settings,
        consumers=[
            Consumer(
                handler=make_handler(deps),
            )
        ],
        routers=[
            make_router(deps),
            tasks_router(deps),
            overrides_router(deps),
            contacts_router(
                deps,
                settings.escalation_contacts_import_max_bytes,
                settings.escalation_contacts_import_max_rows,
            ),
            timeline_router(),
            audit_router,
            collection_router(deps.targets),
            reports_router(deps, deps.reports, deps.targets),
            teams_router(deps),
            notifications_router(deps),
            offers_router(deps),
        ],
        loops=[
            make_timer_loop(deps, settings.escalation_tick_s, settings.escalation_metrics_hour_utc),
            *mailer_loops(settings, deps),
            make_reports_loop(deps, deps.reports, deps.targets),
        ],
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
