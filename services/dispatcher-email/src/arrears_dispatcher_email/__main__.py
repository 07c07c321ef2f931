"""dispatcher-email: notice-due (channel email) -> Gmail -> message-sent."""

from __future__ import annotations

import logging

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.gate import Gate
from arrears_shared.delivery.service import dispatcher_definition
from arrears_shared.service import ServiceDefinition
from arrears_shared.service import main as run

from .channel import EmailChannel
from .settings import EmailSettings
from .views import mailbox_metrics_loop, mailboxes_router

NAME = "dispatcher-email"
log = logging.getLogger(__name__)


def build_engine(settings: EmailSettings, *, gate: Gate | None = None) -> DeliveryEngine:
    """Validates the templates (start-up fails on a broken one) and wires the Gmail channel into the engine.
    With a pool of mailboxes, the pool's decision is the last check of every claim (see `.pool`)."""
    if not settings.gmail_sender and not settings.pooled:
        raise ValueError(
            "ARREARS_GMAIL_SENDER (the sending mailbox) or ARREARS_GMAIL_MAILBOXES (a pool) is required"
        )
    channel = EmailChannel(settings)
    channel.templates.validate()
    engine = DeliveryEngine(channel, settings, gate=gate)
    if channel.pool is not None:
        channel.pool.bound = engine.bound  # the pool pauses mailboxes in the engine's database
        engine.checks.checks.append(channel.pool.check)  # last: after every check that may stop the row
        log.info(
            "sending mailbox pool",
            extra={
                "mailboxes": [
                    {"address": m.address, "daily_quota": m.daily_quota, "enabled": m.enabled}
                    for m in channel.pool.mailboxes.values()
                ],
                "overflow": channel.pool.overflow,
            },
        )
    return engine


def definition(
    settings: EmailSettings | None = None, *, group: str | None = None, gate: Gate | None = None
) -> ServiceDefinition:
    built: list[DeliveryEngine] = []

    def build(s: EmailSettings, *, gate: Gate | None = None) -> DeliveryEngine:
        built.append(build_engine(s, gate=gate))
        return built[-1]

    d = dispatcher_definition(
        NAME, settings or EmailSettings(service_name=NAME), build, group=group, gate=gate
    )
    pool = getattr(built[0].channel, "pool", None)
    d.routers = [*d.routers, mailboxes_router(pool)]
    if pool is not None:
        d.loops = [*d.loops, mailbox_metrics_loop(pool)]
    return d


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
