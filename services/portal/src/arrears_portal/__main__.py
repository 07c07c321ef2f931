"""`python -m arrears_portal`: the debtor's self-service pages behind each notice's personal link;
consumes `account-changed` (what is owed, the verification fact) and `overrides` (settlement offers), produces
`link-clicked` and the debtor's overrides (promise, instalment plan, accepted offer, dispute, opt-out)."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.audit.views import audit_router
from arrears_shared.cloudevents import Envelope
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run
from arrears_shared.stream.transaction import Transaction

from .accounts.handlers import handle_accounts
from .offers.service import handle_offers
from .settings import PortalSettings
from .verification.scheduled import prune_loop
from .web.views import portal_router


async def handle_events(events: Sequence[Envelope], tx: Transaction) -> None:
    """`account-changed` -> the accounts it verifies and shows; `overrides` -> settlement offers (the
    other overrides on the topic, its own included, are not the portal's business)."""
    await handle_accounts(events, tx)
    await handle_offers(events, tx)


def definition(settings: PortalSettings | None = None) -> ServiceDefinition:
    settings = settings or PortalSettings(service_name="portal")
    return ServiceDefinition(
        name="portal",
        settings=settings,
        consumers=[Consumer(handle_events)],
        routers=[portal_router, audit_router],
        loops=[prune_loop],
        body_limits={"/p/": 4096, "/portal/": 16384},
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
