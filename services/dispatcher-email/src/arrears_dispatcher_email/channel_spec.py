"""The email channel as the rest of the platform knows it (see arrears_shared.channels)."""

from arrears_shared.channels import ChannelSpec

CHANNEL = ChannelSpec(
    name="email",
    label="Email",
    address_kind="email",
    dispatcher="dispatcher-email",
    provider="gmail",
    consent="implied",
    sheet_columns=("Email", "Email Address"),
    consent_columns=("Email Consent", "Email Opt-in"),
    max_per_week=7,
    order=20,
)
