"""`python -m arrears_escalation`: cases from replies and unanswered final notices."""

from __future__ import annotations

from arrears_shared import topics
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .cases.handlers import make_handler
from .cases.scheduled import make_timer_loop
from .cases.views import make_router
from .deps import Deps
from .settings import EscalationSettings


def definition() -> ServiceDefinition:
    settings = EscalationSettings(service_name="escalation")
    deps = Deps.from_settings(settings)
    return ServiceDefinition(
        name="escalation",
        settings=settings,
        consumers=[
            Consumer(
                topics=[topics.ACCOUNT_CHANGED, topics.MESSAGE_SENT, topics.REPLY_RECEIVED],
                handler=make_handler(deps),
            )
        ],
        routers=[make_router(deps)],
        loops=[make_timer_loop(deps, settings.escalation_tick_s)],
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
