"""dispatcher-sms settings (`ARREARS_*`)."""

from __future__ import annotations

from arrears_shared.delivery import DispatchSettings
from pydantic import Field, SecretStr


class SmsSettings(DispatchSettings):
    quo_base_url: str = Field("https://api.openphone.com/v1", description="QUO (OpenPhone) API base URL")
    quo_api_key: SecretStr = Field(SecretStr(""), description="QUO API key (Authorization header)")
    quo_from_number: str = Field("", description="Our QUO number (E.164) or phone-number id to send from")
    quo_phone_number_id: str | None = Field(
        None,
        pattern=r"^PN[A-Za-z0-9]+$",
        description="PN… id of ARREARS_QUO_FROM_NUMBER (message lookups need it); unset = looked up once"
        " with GET /phone-numbers at start-up",
    )
    quo_api_version: str | None = Field(
        None,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="Dated QUO API version sent as the Quo-Api-Version header (e.g. 2026-03-30; point"
        " ARREARS_QUO_BASE_URL at the unversioned root); unset = the path-versioned v1 API",
    )
    quo_rate_per_s: float = Field(
        10.0, gt=0, description="Sends per second for the key, all replicas together"
    )
    quo_rate_burst: float = Field(1.0, ge=1, description="GCRA burst (1 = evenly spaced sends)")
    quo_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one QUO request")
    quo_max_connections: int = Field(
        32, ge=1, description="HTTP connections kept open to QUO (keep-alive pool) per replica"
    )
    dispatch_failover_after_s: float | None = Field(
        300.0,
        gt=0,
        description="SMS down -> email: once QUO (and Twilio, if configured) has been down this long, queued"
        " SMS notices whose step falls back to email go by email (see docs/dispatch.md); unset = they wait",
    )
    twilio_account_sid: str = Field(
        "",
        description="Twilio Account SID: set (with the token and number) to send by Twilio while QUO is down",
    )
    twilio_auth_token: SecretStr = Field(SecretStr(""), description="Twilio Auth Token (basic auth password)")
    twilio_from_number: str = Field("", description="Our Twilio number (E.164) to send from")
    twilio_base_url: str = Field("https://api.twilio.com", description="Twilio REST API base URL")
    twilio_status_callback_url: str | None = Field(
        None, description="StatusCallback URL Twilio posts delivery statuses to (signed X-Twilio-Signature)"
    )
    twilio_rate_per_s: float = Field(
        1.0,
        gt=0,
        description="Twilio sends per second, all replicas together (1 per long code; more for"
        " toll-free, short codes and messaging services)",
    )
    twilio_rate_burst: float = Field(1.0, ge=1, description="GCRA burst of the Twilio route")
    twilio_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one Twilio request")

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_from_number)

    brand_name: str = Field("Arrears Collections", description="Creditor name shown in messages")
    sms_max_segments: int = Field(
        3, ge=1, le=10, description="Segment ceiling of one SMS (GSM-7 153 / UCS-2 67 characters per part)"
    )
    sms_opt_out_footer: str = Field(
        "Reply STOP to opt out", description="Appended when a rendered SMS does not mention STOP"
    )
    sms_templates_dir: str | None = Field(
        None, description="Folder whose sms/[<locale>/]<name>.j2 files override the packaged templates"
    )
    sms_default_locale: str = Field("en", description="Language of the templates at the sms/ root")
