"""Portal settings (all `ARREARS_*` variables; the portal's own are `ARREARS_PORTAL_*`, the link keys
`ARREARS_LINK_*` are shared with the dispatchers that mint the links)."""

from __future__ import annotations

from arrears_shared.links import LinkSettings
from arrears_shared.settings import ServiceSettings
from pydantic import Field


class PortalSettings(ServiceSettings, LinkSettings):
    service_name: str = "portal"
    http_port: int = 8090

    portal_brand_name: str = Field("Arrears Collections", description="Company name shown on every page")
    portal_contact: str = Field(
        "",
        max_length=200,
        description="Contact line shown on every page (phone, email, hours), e.g. "
        "`Call +1 555 010 0100, Mon-Fri 9-17`",
    )
    portal_verify_max_attempts: int = Field(
        5,
        ge=1,
        description="Failed verifications of one account (from any link) inside "
        "`ARREARS_PORTAL_VERIFY_WINDOW_S` that lock its links",
    )
    portal_verify_window_s: int = Field(900, ge=1, description="Window in which failed verifications count")
    portal_lockout_s: int = Field(
        1800, ge=1, description="How long an account's links stay locked after too many failed verifications"
    )
    portal_session_ttl_s: int = Field(
        900, ge=60, description="A verified visit ends this long after its last request (sliding)"
    )
    portal_rate_per_minute: int = Field(
        60,
        ge=1,
        description="Requests per minute one client address may make to the public pages (429 above)",
    )
    portal_cookie_secure: bool = Field(
        True,
        description="Mark the portal's session cookie Secure (HTTPS only); `arrears up` sets false for its "
        "plain-HTTP localhost portal",
    )
    portal_promise_max_days: int = Field(
        30, ge=1, le=365, description="Latest promise-to-pay date a debtor may choose, in days from today"
    )
