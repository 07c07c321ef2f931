"""Portal settings (all `ARREARS_*` variables; the portal's own are `ARREARS_PORTAL_*`, the link keys
`ARREARS_LINK_*` are shared with the dispatchers that mint the links)."""

from __future__ import annotations

from arrears_shared.links import LinkSettings
from arrears_shared.settings import ServiceSettings
from pydantic import Field, SecretStr


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
    portal_public_url: str = Field(
        "",
        description="Public base address of the portal (checkout's success/cancel pages return here); "
        "empty: `ARREARS_LINK_PUBLIC_URL` without its `/p/`",
    )
    portal_checkout_base_url: str = Field(
        "",
        description="Base URL of the payment gateway's Checkout Sessions API (Stripe: `https://api.stripe.com`; "
        "`arrears up`: the checkout emulator); empty: the portal offers no payment",
    )
    portal_checkout_secret_key: SecretStr | None = Field(
        None, description="Secret API key of the payment gateway (`sk_…`), sent as the bearer token"
    )
    portal_checkout_page_origin: str = Field(
        "",
        description="Origin of the gateway's hosted payment page, allowed as a form target by the pages' CSP "
        "(Stripe: `https://checkout.stripe.com`); empty: the origin of `ARREARS_PORTAL_CHECKOUT_BASE_URL`",
    )
    portal_checkout_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Timeout of one call to the Checkout Sessions API"
    )
    portal_pay_min_minor: int = Field(
        100,
        ge=1,
        description="Smallest part payment, in minor units of the account's currency (a balance below it "
        "can still be paid in full)",
    )
    portal_compliance_rules_path: str | None = Field(
        None,
        description="YAML compliance rule table a debtor's contact window is checked against when saved (the "
        "same file as ARREARS_SEGMENTER_COMPLIANCE_RULES_PATH); default: arrears_shared.compliance.DEFAULT_RULES",
    )
    # instalment plans the debtor may choose (arrears_portal.plans)
    portal_plan_max_instalments: int = Field(
        12, ge=2, le=120, description="Most instalments a debtor may split the balance into on the portal"
    )
    portal_plan_min_instalment_minor: int = Field(
        1000,
        ge=1,
        description="Smallest instalment, in minor units of the account's currency (a plan whose instalments "
        "would be smaller is refused: choose fewer)",
    )
    portal_plan_max_term_days: int = Field(
        365, ge=7, le=1830, description="Latest last instalment of a plan, in days from today"
    )
    portal_plan_cadences: str = Field(
        "week,fortnight,month",
        pattern=r"^\s*(week|fortnight|month)\s*(,\s*(week|fortnight|month)\s*)*$",
        description="How often instalments may fall due, comma-separated: `week`, `fortnight`, `month` "
        "(empty list not allowed)",
    )
