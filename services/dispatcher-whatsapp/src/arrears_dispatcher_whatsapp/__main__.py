"""dispatcher-whatsapp: notice-due (channel whatsapp) -> WhatsApp Business Cloud API -> message-sent."""

from __future__ import annotations

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.gate import Gate
from arrears_shared.delivery.service import dispatcher_definition
from arrears_shared.service import ServiceDefinition
from arrears_shared.service import main as run

from .channel import WhatsAppChannel
from .settings import WhatsAppSettings

NAME = "dispatcher-whatsapp"


def build_engine(settings: WhatsAppSettings, *, gate: Gate | None = None) -> DeliveryEngine:
    """Checks the credentials are configured, validates the template mapping (start-up fails on a broken
    one) and wires the WhatsApp channel into the engine."""
    if not settings.whatsapp_phone_number_id:
        raise ValueError("ARREARS_WHATSAPP_PHONE_NUMBER_ID is required (our business phone number's id)")
    if not settings.whatsapp_access_token.get_secret_value():
        raise ValueError("ARREARS_WHATSAPP_ACCESS_TOKEN is required (a system-user token of the Meta app)")
    channel = WhatsAppChannel(settings)
    channel.templates.validate()
    return DeliveryEngine(channel, settings, gate=gate)


def definition(
    settings: WhatsAppSettings | None = None, *, group: str | None = None, gate: Gate | None = None
) -> ServiceDefinition:
    return dispatcher_definition(
        NAME, settings or WhatsAppSettings(service_name=NAME), build_engine, group=group, gate=gate
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
