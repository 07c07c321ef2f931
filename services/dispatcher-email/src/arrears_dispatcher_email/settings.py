"""dispatcher-email settings (`ARREARS_*`)."""

from __future__ import annotations

from arrears_shared.delivery import DispatchSettings
from pydantic import Field, SecretStr


class EmailSettings(DispatchSettings):
    gmail_api_endpoint: str | None = Field(
        None, description="Gmail API root (e.g. the emulator's URL); None = Google's own endpoint"
    )
    gmail_credentials_file: str | None = Field(
        None,
        description="Google credentials JSON: a service account (domain-wide delegation, acting as the sender)"
        " or an authorized-user file with a refresh token",
    )
    gmail_token: SecretStr | None = Field(
        None, description="Static OAuth bearer token (emulator / short tests)"
    )
    gmail_sender: str = Field("", description="Sending mailbox address (From:)")
    gmail_rate_per_s: float = Field(
        2.5, gt=0, description="Sends per second for the mailbox (250 quota units/s / 100 per send)"
    )
    gmail_rate_burst: float = Field(1.0, ge=1, description="GCRA burst (1 = evenly spaced sends)")
    gmail_timeout_s: float = Field(15.0, gt=0, description="HTTP timeout of one Gmail request")
    email_unsubscribe_url: str = Field(
        "https://arrears.example/unsubscribe/{notice_id}",
        description="One-click unsubscribe URL (https); {notice_id} is replaced",
    )
    brand_name: str = Field("Arrears Collections", description="Creditor name shown in messages")
