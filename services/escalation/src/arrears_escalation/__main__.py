"""`python -m arrears_escalation`: cases from replies and unanswered final notices."""

from __future__ import annotations

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .cases.handlers import make_handler
from .cases.scheduled import make_timer_loop
from .cases.views import make_router
from .collection.views import make_router as collection_router
from .deps import Deps
from .overrides.views import make_router as overrides_router
from .settings import EscalationSettings
from .tasks.views import make_router as tasks_router
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
            timeline_router(),
            audit_router,
            collection_router(),
        ],
        loops=[make_timer_loop(deps, settings.escalation_tick_s, settings.escalation_metrics_hour_utc)],
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
