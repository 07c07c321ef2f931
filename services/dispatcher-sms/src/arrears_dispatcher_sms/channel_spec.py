"""The SMS channel as the rest of the platform knows it (see arrears_shared.channels)."""

from arrears_shared.channels import ChannelSpec

CHANNEL = ChannelSpec(
    name="sms",
    label="SMS",
    address_kind="phone",
    dispatcher="dispatcher-sms",
    provider="quo",
    consent="implied",
    sheet_columns=("Phone", "Phone Number", "Mobile"),
    consent_columns=("SMS Consent", "SMS Opt-in"),
    max_per_week=7,
    order=10,
)
