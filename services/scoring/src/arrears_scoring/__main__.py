"""`python -m arrears_scoring`: folds account changes, messages, replies, overrides and link clicks into its
own history, trains the payment, drop-out and recovery models on it, and publishes each open account's daily
score (`account-scored`) once per UTC day."""

from __future__ import annotations

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .api.views import scoring_router
from .history.handlers import handle_history
from .jobs.scheduled import scoring_loop
from .settings import ScoringSettings


def definition(settings: ScoringSettings | None = None) -> ServiceDefinition:
    settings = settings or ScoringSettings(service_name="scoring")
    return ServiceDefinition(
        name="scoring",
        settings=settings,
        consumers=[Consumer(handle_history)],
        routers=[scoring_router, audit_router],
        loops=[scoring_loop],
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
