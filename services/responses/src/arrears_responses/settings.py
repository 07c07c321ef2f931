"""Responses settings (all `ARREARS_*` variables)."""

from __future__ import annotations

from arrears_shared.settings import ServiceSettings
from pydantic import Field, SecretStr


class ResponsesSettings(ServiceSettings):
    service_name: str = "responses"
    http_port: int = 8005

    quo_webhook_signing_key: SecretStr | None = Field(
        None,
        description="Base64 signing key of the QUO (OpenPhone) webhook; unset = every webhook is rejected",
    )
    responses_webhook_tolerance_s: int = Field(
        300, gt=0, description="Max age (seconds) of a webhook signature timestamp; older = replay, rejected"
    )
