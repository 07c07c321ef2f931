"""dispatcher-whatsapp settings (`ARREARS_*`)."""

from __future__ import annotations

from arrears_shared.delivery import DispatchSettings
from pydantic import Field, SecretStr


class WhatsAppSettings(DispatchSettings):
    whatsapp_base_url: str = Field(
        "https://graph.facebook.com", description="Graph API root (the version is a path segment after it)"
    )
    whatsapp_api_version: str = Field(
        "v23.0", pattern=r"^v\d{1,2}\.\d$", description="Graph API version used in every request path"
    )
    whatsapp_access_token: SecretStr = Field(
        SecretStr(""),
        description="System-user access token (Authorization: Bearer) with whatsapp_business_messaging",
    )
    whatsapp_phone_number_id: str = Field(
        "", pattern=r"^\d*$", description="Id of our WhatsApp business phone number (the sender)"
    )
    whatsapp_rate_per_s: float = Field(
        20.0,
        gt=0,
        description="Sends per second for the phone number, all replicas together (Meta: 80 by default)",
    )
    whatsapp_rate_burst: float = Field(1.0, ge=1, description="GCRA burst (1 = evenly spaced sends)")
    whatsapp_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one Graph API request")
    whatsapp_connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout")
    whatsapp_max_connections: int = Field(
        32, ge=1, description="HTTP connections kept open to the Graph API (keep-alive pool) per replica"
    )
    whatsapp_templates_file: str | None = Field(
        None,
        description="YAML mapping our templates (template id / tier + locale) to approved WhatsApp templates;"
        " unset = the packaged templates/whatsapp.yaml",
    )
    whatsapp_default_locale: str = Field(
        "en", description="Locale used when a notice's locale has no mapping"
    )
    whatsapp_window_margin_s: float = Field(
        600.0,
        ge=0,
        description="A reply answer goes as free-form text only while the 24-hour customer-service window"
        " has at least this long left; otherwise as a template",
    )
    brand_name: str = Field("Arrears Collections", description="Creditor name shown in messages")
