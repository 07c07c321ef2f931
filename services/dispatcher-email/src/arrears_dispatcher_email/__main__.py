"""dispatcher-email: notice-due (channel email) -> Gmail -> message-sent."""

from __future__ import annotations

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.gate import Gate
from arrears_shared.delivery.service import dispatcher_definition
from arrears_shared.service import ServiceDefinition
from arrears_shared.service import main as run

from .channel import EmailChannel
from .settings import EmailSettings

NAME = "dispatcher-email"


def build_engine(settings: EmailSettings, *, gate: Gate | None = None) -> DeliveryEngine:
    """Validates the templates (start-up fails on a broken one) and wires the Gmail channel into the engine."""
    if not settings.gmail_sender:
        raise ValueError("ARREARS_GMAIL_SENDER is required (the sending mailbox address)")
    channel = EmailChannel(settings)
    channel.templates.validate()
    return DeliveryEngine(channel, settings, gate=gate)


def definition(
    settings: EmailSettings | None = None, *, group: str | None = None, gate: Gate | None = None
) -> ServiceDefinition:
    return dispatcher_definition(
        NAME, settings or EmailSettings(service_name=NAME), build_engine, group=group, gate=gate
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
