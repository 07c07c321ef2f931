"""`python -m arrears_portal`: the debtor's self-service pages behind each notice's personal link;
consumes `account-changed` (what is owed, the verification fact), produces `link-clicked` and the debtor's
overrides (promise, dispute, opt-out)."""

from __future__ import annotations

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run

from .accounts.handlers import handle_accounts
from .settings import PortalSettings
from .verification.scheduled import prune_loop
from .web.views import portal_router


def definition(settings: PortalSettings | None = None) -> ServiceDefinition:
    settings = settings or PortalSettings(service_name="portal")
    return ServiceDefinition(
        name="portal",
        settings=settings,
        consumers=[Consumer(handle_accounts)],
        routers=[portal_router, audit_router],
        loops=[prune_loop],
        body_limits={"/p/": 4096, "/portal/": 16384},
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
