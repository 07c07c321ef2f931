"""The WhatsApp channel as the rest of the platform knows it (see arrears_shared.channels).

WhatsApp is opt-in: Meta's Business Messaging Policy allows business-initiated messages only to people who
agreed to receive them on WhatsApp, so nothing is planned on this channel without a recorded opt-in
(`consent_columns`). Falling back to SMS when the customer cannot be reached here is policy (a step lists
its channels in order, e.g. whatsapp then sms), not part of this declaration.
"""

from arrears_shared.channels import ChannelSpec

CHANNEL = ChannelSpec(
    name="whatsapp",
    label="WhatsApp",
    address_kind="phone",
    dispatcher="dispatcher-whatsapp",
    provider="whatsapp-cloud",
    consent="opt_in",
    sheet_columns=("WhatsApp", "WhatsApp Number", "WhatsApp Phone"),
    consent_columns=("WhatsApp opt-in", "WhatsApp Opt In", "WhatsApp Consent"),
    opt_out_keywords=("STOP", "UNSUBSCRIBE", "STOP WHATSAPP", "BAJA", "PARAR"),
    max_per_week=3,
    order=30,
)
