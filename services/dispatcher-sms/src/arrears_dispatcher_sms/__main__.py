"""dispatcher-sms: notice-due (channel sms) -> QUO -> message-sent."""

from __future__ import annotations

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.gate import Gate
from arrears_shared.delivery.service import dispatcher_definition
from arrears_shared.service import ServiceDefinition
from arrears_shared.service import main as run

from .channel import SmsChannel
from .settings import SmsSettings

NAME = "dispatcher-sms"


def build_engine(settings: SmsSettings, *, gate: Gate | None = None) -> DeliveryEngine:
    """Validates the templates (start-up fails on a broken one) and wires the QUO channel into the engine."""
    if not settings.quo_from_number:
        raise ValueError("ARREARS_QUO_FROM_NUMBER is required (our QUO number or phone-number id)")
    channel = SmsChannel(settings)
    channel.templates.validate()
    return DeliveryEngine(channel, settings, gate=gate)


def definition(
    settings: SmsSettings | None = None, *, group: str | None = None, gate: Gate | None = None
) -> ServiceDefinition:
    return dispatcher_definition(
        NAME, settings or SmsSettings(service_name=NAME), build_engine, group=group, gate=gate
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
