from __future__ import annotations

from arrears_shared.settings import MoneySettings, ServiceSettings
from pydantic import Field

# the customer confirmations (arrears_segmenter.payments.confirmations); spelled here: settings is core
ALL_CONFIRMATIONS = (
    "payment_receipt",
    "promise_confirmation",
    "plan_confirmation",
    "dispute_acknowledgement",
)


class SegmenterSettings(ServiceSettings, MoneySettings):
    segmenter_tick_s: float = Field(1.0, description="Seconds between timer-loop ticks")
    segmenter_timer_batch: int = Field(500, description="Max due timers handled per tick (one transaction)")
    segmenter_timer_workers: int = Field(
        2,
        ge=1,
        description="Concurrent timer-loop workers per replica (each its own transaction; they share the due "
        "timers through SKIP LOCKED as replicas do, so one's Postgres round trips overlap another's CPU)",
    )
    segmenter_policy_path: str | None = Field(
        None, description="YAML dunning policy; default: the packaged policies/default.yaml"
    )
    segmenter_aging_boundaries: str = Field(
        "30,60,90,120", description="Upper bounds (days) of the 1-30/31-60/61-90/91-120 buckets"
    )
    segmenter_compliance_rules_path: str | None = Field(
        None, description="YAML compliance rule table; default: arrears_shared.compliance.DEFAULT_RULES"
    )
    segmenter_paid_claim_pause_days: int = Field(
        7, description="Pause after a 'paid' claim without a date, to let the payment show up"
    )
    segmenter_balance_bands: str = Field(
        "10000,100000,1000000",
        description="Upper bounds of the low / medium / high balance bands, in minor units of the reporting "
        "currency (ARREARS_FX_RATES_FILE; balances are converted first); above: very_high",
    )
    segmenter_score_max_age_days: int = Field(
        3,
        ge=0,
        le=60,
        description="A model score (account-scored) older than this many days is not used: campaigns then "
        "select on the rule score's band and steps keep the policy's channel order and time",
    )
    segmenter_clock_offset_s: float = Field(0.0, description="Shift 'now' (demos only)")
    segmenter_payment_retry_after_s: float = Field(
        2 * 86400.0,
        gt=0,
        description="Failed payments: ask the customer to pay again this long after the failure (and after "
        "each retry); after the last retry this long passes before the payment goes to people",
    )
    segmenter_payment_retries_max: int = Field(
        3, ge=1, le=10, description="Failed payments: scheduled retries before a recovery task for people"
    )
    segmenter_payment_option: str = Field(
        "reply to this message or call us to pay",
        min_length=1,
        max_length=120,
        description="The company's manual payment option, quoted in a failed-payment retry notice (keep it "
        "short: it goes into the SMS)",
    )
    segmenter_payment_link: str = Field(
        "",
        max_length=120,
        description="A payment link quoted instead of ARREARS_SEGMENTER_PAYMENT_OPTION when set (the debtor "
        "portal of issue #19 will fill it)",
    )
    segmenter_confirmations: str = Field(
        ",".join(ALL_CONFIRMATIONS),
        description="Customer confirmations to send, comma-separated (empty = none): "
        + ", ".join(ALL_CONFIRMATIONS),
    )
    segmenter_confirmation_channels: str = Field(
        "sms,email",
        description="Channels confirmations and retry notices may use, in order (after the reply's own "
        "channel and a person's channel preference); channels with templates for them: sms, email",
    )
    segmenter_confirmation_expiry_s: float = Field(
        3 * 86400.0,
        gt=0,
        description="A confirmation not sent this long after it was due is dropped (expired)",
    )
    segmenter_locales_by_country: str = Field(
        "",
        description='JSON {"<country>": "<locale>"} choosing the template language of every notice (dunning '
        "steps, confirmations, retry notices); empty = Spanish (es) for the Spanish-speaking countries, else "
        "the default language",
    )
