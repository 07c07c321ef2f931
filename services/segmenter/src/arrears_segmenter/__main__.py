"""`python -m arrears_segmenter`: aging, dunning policy, durable timers and the compliance gate."""

from __future__ import annotations

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .accounts.views import make_router
from .approvals.views import make_router as approvals_router
from .campaigns.views import make_router as campaigns_router
from .consumer import make_handler
from .deps import Deps
from .nextsteps.views import make_router as next_steps_router
from .payments.views import make_router as payments_router
from .schedule.views import make_router as policies_router
from .settings import SegmenterSettings
from .timers.scheduled import make_timer_loop


def definition() -> ServiceDefinition:
    settings = SegmenterSettings(service_name="segmenter")
    deps = Deps.from_settings(settings)
    return ServiceDefinition(
        name="segmenter",
        settings=settings,
        consumers=[
            Consumer(
                handler=make_handler(deps),
            )
        ],
        routers=[
            make_router(deps),
            policies_router(deps),
            campaigns_router(deps),
            approvals_router(deps),
            next_steps_router(deps),
            payments_router(deps),
            audit_router,
        ],
        loops=[make_timer_loop(deps, settings.segmenter_tick_s, settings.segmenter_timer_workers)],
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
