"""Event contracts: one pydantic model per CloudEvents type.

Each model names its topic and `ce_type`. Money is integer minor units + ISO 4217 currency; timestamps are
timezone-aware UTC; phone numbers E.164; the debtor's IANA zone travels with the account. A breaking change
gets a new model with a `.v2` type, never an edit of a published one.

Evolution rule (docs/upgrades.md): within a version a producer may add *optional* fields; every consumer
ignores fields it does not know (`extra="ignore"`; the JSON Schemas say `additionalProperties: true`), so a
new producer never dead-letters an old consumer. An ignored field is not kept: a consumer that re-publishes
data re-publishes only the fields it knows. Removing or renaming a field, changing its type or meaning,
making an optional field required, or adding a value to a closed enumeration is a breaking change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from . import topics
from .account_status import AccountStatus as AccountStatus  # re-exported: defined apart, pydantic-free
from .contact_window import ContactWindow as ContactWindow  # re-exported: the gate uses it too
from .money import format_amount

AccountId = Annotated[str, Field(min_length=1, max_length=64, description="PME account id (Kafka key)")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
E164 = Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$", description="E.164 phone number")]


# Consumers tolerate fields added by newer producers of the same version (see the module docstring).
TOLERANT = ConfigDict(frozen=True, extra="ignore", json_schema_extra={"additionalProperties": True})


class Event(BaseModel):
    """Base of every event. `account_id` is the Kafka key, so one account's events stay ordered."""

    model_config = TOLERANT

    ce_type: ClassVar[str]
    topic: ClassVar[str]
    # Personal fields (paths; `*` = every value of a mapping): sealed with the account's data key on the
    # wire and in outboxes (arrears_shared.vault), so erasing the account makes them unreadable everywhere.
    personal: ClassVar[tuple[str, ...]] = ()

    account_id: AccountId

    @property
    def key(self) -> str:
        return self.account_id


class Tier(StrEnum):
    REMINDER = "reminder"
    FIRM = "firm"
    FINAL = "final"


CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{1,20}$"
Channel = Annotated[
    str,
    StringConstraints(pattern=CHANNEL_PATTERN),
    Field(
        description="A channel of the channel registry (arrears_shared.channels): sms, email, whatsapp, ... "
        "The set is open: a consumer meets a channel it does not know as a plain name."
    ),
]


class AgingBucket(StrEnum):
    CURRENT = "current"
    D1_30 = "1-30"
    D31_60 = "31-60"
    D61_90 = "61-90"
    D91_120 = "91-120"
    D120_PLUS = "120+"


class ContactPoint(BaseModel):
    """How the source says the customer can be reached on one channel."""

    model_config = TOLERANT

    address: str | None = Field(None, description="The channel's address: E.164 phone or email, normalised")
    consent: bool = Field(False, description="Consent (an opt-in for opt-in channels such as WhatsApp)")


class AccountChanged(Event):
    """An account was created, changed or removed in a source (PME sheet, upload, payment)."""

    ce_type: ClassVar[str] = "arrears.account.changed.v1"
    topic: ClassVar[str] = topics.ACCOUNT_CHANGED
    personal: ClassVar[tuple[str, ...]] = ("customer_name", "phone", "email", "contacts.*.address")

    change: Literal["created", "updated", "removed", "payment"]
    source: Literal["sheet", "upload", "payment", "override"]
    source_row: int | None = Field(None, description="1-based sheet row number, header = row 1")
    customer_name: str
    phone: E164 | None = None
    email: str | None = None
    balance_minor: int
    currency: Currency
    due_date: date
    last_payment_date: date | None = None
    last_payment_minor: int | None = None
    timezone: str | None = Field(None, description="IANA zone of the debtor, None if unknown")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2")
    region: str | None = Field(None, description="State / province code")
    sms_consent: bool = False
    email_consent: bool = False
    contacts: dict[str, ContactPoint] = Field(
        default_factory=dict,
        description="Address and consent per channel of the channel registry (sms, email, whatsapp, ...). "
        "`phone`/`sms_consent` and `email`/`email_consent` repeat the sms and email entries; an event "
        "without `contacts` (older producers) means exactly those two.",
    )
    status: AccountStatus = AccountStatus.OPEN
    content_hash: str = Field(description="Hash of the normalised source row; equal hash = no change")
    as_of: AwareDatetime

    @property
    def stop_reason(self) -> str | None:
        """Why no dunning may follow this state of the account (the segmenter's stop rules of the same name),
        None while it may: removed from its source, nothing left to pay, or paid / closed there."""
        if self.change == "removed":
            return "account_removed"
        if self.balance_minor <= 0:
            return "balance_settled"
        if self.status in (AccountStatus.PAID, AccountStatus.CLOSED):
            return f"status_{self.status.value}"
        return None

    def contact_points(self) -> dict[str, ContactPoint]:
        """`contacts`, or for an event from an older producer the two channels its flat fields name."""
        if self.contacts:
            return self.contacts
        return {  # built from validated fields: no second validation (the segmenter folds 100k of these)
            "sms": ContactPoint.model_construct(address=self.phone, consent=self.sms_consent),
            "email": ContactPoint.model_construct(address=self.email, consent=self.email_consent),
        }


class PaymentFailed(Event):
    """A payment webhook reported a failed payment for the account (declined card, insufficient funds).

    It travels on `account-changed`, in the account's ordered history, but the account itself did not
    change (balance, status and contacts are as the last `AccountChanged` says). Consumers that do not act
    on it ignore it by `ce_type`, as they ignore any type they do not know."""

    ce_type: ClassVar[str] = "arrears.payment.failed.v1"
    topic: ClassVar[str] = topics.ACCOUNT_CHANGED

    provider: str = Field(max_length=32, description="Payment webhook that reported it: stripe, generic, ...")
    payment_id: str = Field(
        max_length=255, description="The provider's payment id (Stripe: PaymentIntent id)"
    )
    failure_id: str = Field(
        max_length=255,
        description="Id of this failed attempt (Stripe: the charge, else the event; generic: the payment id); "
        "a payment retried after a failure can fail again under a new failure_id",
    )
    amount_minor: int | None = Field(None, description="Amount attempted, integer minor units")
    currency: Currency | None = None
    failure_code: str | None = Field(
        None, max_length=100, description="e.g. card_declined, insufficient_funds"
    )
    failure_message: str = Field("", max_length=500)
    balance_minor: int | None = Field(None, description="The account's balance (unchanged by the failure)")
    failed_at: AwareDatetime


class DunningStopped(Event):
    """The segmenter stopped an account's dunning for a reason the dispatchers cannot see for themselves:
    `settled` (an accepted settlement offer paid in full; a balance is left, so `account-changed` alone does
    not end dunning), `do_not_contact` (a person's cease request: every channel, or the `channels` named),
    `dispute` (held as disputed), `paused` (a person paused it until resumed).

    It travels on `notice-due`, in order after every notice the segmenter issued for the account. A dispatcher
    whose channel it covers withdraws every collection notice of the account issued at or before
    `stopped_at` (`NoticeDue.issued_at`, the segmenter's clock; a notice without it: queued before the
    event was read), whenever it arrives — a replay, a DLQ revival, an SMS-to-email failover copy
    (`withdrawn: <reason>`; receipts and other confirmations still go). For `settled` it also records an
    account stop, as after a payment in full. A stop that is lifted later (dunning resumed, do-not-contact
    cleared) needs no event: notices issued after it go. Consumers that do not act on it ignore it by
    `ce_type`."""

    ce_type: ClassVar[str] = "arrears.dunning.stopped.v1"
    topic: ClassVar[str] = topics.NOTICE_DUE

    reason: Literal["settled", "do_not_contact", "dispute", "paused"] = Field(
        description="settled: an accepted settlement offer paid in full; do_not_contact: a person's cease "
        "request; dispute: held as disputed; paused: paused by a person until resumed"
    )
    channels: list[Channel] = Field(
        default_factory=list, description="The channels it stops; empty: every channel"
    )
    account_as_of: AwareDatetime = Field(
        description="`as_of` of the account state it was decided on (for `settled`: the settling payment's): "
        "notices planned from an older state are suppressed"
    )
    stopped_at: AwareDatetime


NoticePurpose = Literal[
    "dunning",
    "opt_out_confirmation",
    "help",
    "payment_retry",
    "payment_receipt",
    "promise_confirmation",
    "plan_confirmation",
    "dispute_acknowledgement",
    "out_of_hours_ack",
]
# Answers to a message the customer just sent: exempt from the opt-out they confirm, holds and the gate.
ANSWER_PURPOSES: frozenset[str] = frozenset({"opt_out_confirmation", "help"})
# Collection messages: every check applies (a stop, a withdrawal, the frequency cap)
COLLECTION_PURPOSES: frozenset[str] = frozenset({"dunning", "payment_retry"})
# Confirmations of a fact (payment, promise, plan, dispute): an opt-out, a hold and contact hours apply, the
# dunning frequency cap and a stop (paid in full) do not. A payment retry is a collection message: like dunning.
CONFIRMATION_PURPOSES: frozenset[str] = frozenset(
    {"payment_receipt", "promise_confirmation", "plan_confirmation", "dispute_acknowledgement"}
)


NOTICE_LABELS: dict[str, str] = {
    "payment_retry": "Payment retry notice",
    "payment_receipt": "Payment receipt",
    "promise_confirmation": "Promise confirmation",
    "plan_confirmation": "Payment plan confirmation",
    "dispute_acknowledgement": "Dispute acknowledgement",
    "opt_out_confirmation": "Opt-out confirmation",
    "help": "HELP answer",
}


def notice_label(purpose: str) -> str:
    """How a timeline names a notice of this purpose ("Payment receipt")."""
    return NOTICE_LABELS.get(purpose, purpose.replace("_", " ").capitalize())


def channel_label(channel: str) -> str:
    return {"sms": "SMS", "email": "email", "whatsapp": "WhatsApp"}.get(channel, channel)


class NoticeDue(Event):
    """A dunning step is due for one account on one channel. `notice_id` is deterministic:
    (account, policy version, step, cycle, channel), so replays never produce a second notice."""

    ce_type: ClassVar[str] = "arrears.notice.due.v1"
    topic: ClassVar[str] = topics.NOTICE_DUE
    personal: ClassVar[tuple[str, ...]] = ("to", "customer_name", "fallback_to.*", "text", "in_reply_to")

    notice_id: str
    policy_id: str
    policy_version: int
    step: int
    cycle: int = 0
    tier: Tier
    channel: Channel
    fallback_channels: list[Channel] = Field(
        default_factory=list,
        description="Informational: the channels the step falls back to, in order, should this notice fail "
        "permanently. The segmenter sends that notice itself when it sees the failure (`message-sent`).",
    )
    fallback_to: dict[Channel, str] = Field(
        default_factory=dict, description="Informational: the address of each fallback channel"
    )
    template_id: str
    campaign_id: str | None = None
    priority: int = Field(0, description="Higher first when backlogged (final notices highest)")
    to: str = Field(description="E.164 number or email address")
    customer_name: str
    balance_minor: int
    currency: Currency
    days_past_due: int
    aging_bucket: AgingBucket
    timezone: str | None
    country: str | None = None
    region: str | None = None
    due_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    account_as_of: AwareDatetime | None = Field(
        None,
        description="`as_of` of the account state the notice was planned from (the latest `account-changed` "
        "the planner had folded). A dispatcher that has since seen the account stopped at its source (paid in "
        "full, closed, removed) with a later `as_of` suppresses the notice instead of sending it.",
    )
    issued_at: AwareDatetime | None = Field(
        None,
        description="When the segmenter issued the notice (its clock; added within v1). A `DunningStopped` "
        "withdraws the account's notices issued at or before its `stopped_at`; an SMS-to-email failover copy "
        "keeps the original's. None (older producers, the automatic answers): the moment a dispatcher "
        "queued it counts instead.",
    )
    locale: str | None = Field(
        None, description="BCP 47 language tag of the debtor (e.g. es-MX) selecting the template language"
    )
    purpose: NoticePurpose = Field(
        "dunning",
        description=(
            "`dunning` = a collection message (templates, compliance gate, opt-outs apply). The others are "
            "answers to a message the customer just sent (`opt_out_confirmation`: the one confirmation of an "
            "SMS opt-out; `help`: the HELP text): sent as `text`, exempt from the opt-out they confirm and "
            "from the contact-hours gate, never counted as a dunning step"
        ),
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=1600,
        description="The exact message for a non-dunning purpose (None for dunning: rendered by template)",
    )
    about_amount_minor: int | None = Field(
        None,
        description="Confirmations and payment retries: the amount the message is about (the payment "
        "received, the amount promised or of each instalment, the payment that failed), minor units of "
        "`currency`",
    )
    about_date: date | None = Field(
        None,
        description="`promise_confirmation` / `plan_confirmation`: the promised day or the first instalment",
    )
    plan_every: Literal["week", "fortnight", "month"] | None = Field(
        None, description="`plan_confirmation`: how often an instalment is due"
    )
    reference: str | None = Field(
        None, max_length=64, description="Receipt number / reference the customer can quote"
    )
    pay_with: str | None = Field(
        None,
        max_length=300,
        description="`payment_retry`: how the customer can pay (the company's manual payment option or link)",
    )
    retry: int | None = Field(None, ge=1, description="`payment_retry`: which scheduled retry this is (1..)")
    retries_max: int | None = Field(None, ge=1, description="`payment_retry`: how many retries are scheduled")
    in_reply_to: str | None = Field(
        None,
        max_length=998,
        description="`out_of_hours_ack` on email: the Message-ID of the customer's email it answers; the "
        "acknowledgement is sent `In-Reply-To` it so that it threads",
    )
    contact_window: ContactWindow | None = Field(
        None,
        description="The debtor's own quiet times (set in the portal): the dispatchers' compliance gate sends "
        "only inside both the legal window and this one. None: no wish beyond the legal window (and every "
        "notice from a producer before this field)",
    )

    @property
    def is_dunning(self) -> bool:
        return self.purpose == "dunning"

    @property
    def is_answer(self) -> bool:
        """An automatic answer to the customer's own message (opt-out confirmation, HELP)."""
        return self.purpose in ANSWER_PURPOSES

    @property
    def is_confirmation(self) -> bool:
        return self.purpose in CONFIRMATION_PURPOSES

    @property
    def is_collection(self) -> bool:
        """A collection message (dunning or a failed-payment retry): every check applies."""
        return self.purpose in COLLECTION_PURPOSES


class DeliveryStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


SENT_TEXT_MAX = 4000  # characters of a sent message's text kept on `message-sent` (an email's text part)


class MessageSent(Event):
    """Outcome of one notice on one channel: sent, failed (with reason) or suppressed by the last-moment gate."""

    ce_type: ClassVar[str] = "arrears.message.sent.v1"
    topic: ClassVar[str] = topics.MESSAGE_SENT
    personal: ClassVar[tuple[str, ...]] = ("to", "text")

    notice_id: str
    channel: Channel
    status: DeliveryStatus
    provider: str
    provider_message_id: str | None = None
    thread_id: str | None = None
    to: str
    tier: Tier
    step: int
    campaign_id: str | None = None
    reason: str | None = None
    permanent: bool = False
    attempts: int = 1
    sent_at: AwareDatetime
    timezone: str | None = Field(None, description="The debtor's IANA time zone (from the notice)")
    currency: Currency | None = Field(None, description="The account's currency (from the notice)")
    purpose: NoticePurpose = Field("dunning", description="The notice's `purpose` (from the notice)")
    text: str | None = Field(
        None,
        description="`sent`: the text the customer was sent (SMS content; an email's text part, at most "
        f"{SENT_TEXT_MAX} characters, cut with a marker), sealed like every personal field; None otherwise",
    )


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    HELP = "help"
    PAID_CLAIM = "paid_claim"
    PROMISE_TO_PAY = "promise_to_pay"
    DISPUTE = "dispute"
    WRONG_NUMBER = "wrong_number"
    CALLBACK_REQUEST = "callback_request"
    HARDSHIP = "hardship"
    OTHER = "other"


class ReplyReceived(Event):
    """A customer replied (SMS or email) and the reply was matched to an account and classified."""

    ce_type: ClassVar[str] = "arrears.reply.received.v1"
    topic: ClassVar[str] = topics.REPLY_RECEIVED
    personal: ClassVar[tuple[str, ...]] = ("from_address", "text")

    reply_id: str
    channel: Channel
    from_address: str
    text: str = Field(max_length=5000)
    intent: Intent
    confidence: float = Field(ge=0, le=1)
    promise_amount_minor: int | None = None
    promise_date: date | None = None
    promise_currency: str | None = Field(None, description="ISO 4217 of the promised amount")
    promise_plan_every: Literal["week", "fortnight", "month"] | None = Field(
        None, description="An instalment offer: `promise_amount_minor` is paid every week / fortnight / month"
    )
    provider_message_id: str | None = None
    in_reply_to_notice_id: str | None = None
    received_at: AwareDatetime
    suggested_intent: Intent | None = Field(
        None, description="The classifier's best guess when it was not sure enough to act (`intent` = other)"
    )
    needs_review: bool = Field(False, description="Below the confidence threshold: a person reads the reply")
    possible_opt_out: bool = Field(
        False,
        description="Fail-safe: the reply may be an opt-out the classifier is unsure of; the channel's "
        "dispatcher pauses messages to the account until a person decides (a reviewed event)",
    )
    reviewed_by: str | None = Field(
        None,
        description="Set on a person's decision about an earlier reply (same `reply_id`): `intent` is theirs; "
        "it releases (or, for an opt-out, confirms) a fail-safe pause",
    )
    model_version: str | None = Field(None, description="Version of the intent model that classified it")

    def summary(self) -> str:
        """One line for timelines: intent, confidence, promise, and who decided or what waits for whom."""
        promise = ""
        if self.promise_amount_minor is not None or self.promise_date is not None:
            amount = (
                format_amount(self.promise_amount_minor, self.promise_currency)
                if self.promise_amount_minor is not None
                else "?"
            )
            every = f" every {self.promise_plan_every}" if self.promise_plan_every else ""
            when = self.promise_date.isoformat() if self.promise_date else "?"
            promise = f", promise {amount}{every} from {when}"
        line = f"{self.channel} reply: {self.intent.value} ({self.confidence:.2f}){promise}"
        if self.reviewed_by:
            return f"{line}, decided by {self.reviewed_by}"
        if self.possible_opt_out:
            guess = (self.suggested_intent or self.intent).value
            return (
                f"{line}: possible opt-out (best guess {guess}), {self.channel} paused until someone decides"
            )
        if self.needs_review and self.suggested_intent:
            return f"{line}: unsure (best guess {self.suggested_intent.value}), for a person to read"
        return line


class IngestRejected(Event):
    """A source row was rejected; `account_id` is the row's id if it had one, else `row:<n>`."""

    ce_type: ClassVar[str] = "arrears.ingest.rejected.v1"
    topic: ClassVar[str] = topics.INGEST_REJECTED

    source: Literal["sheet", "upload", "payment"]
    batch_id: str
    row_number: int
    column: str | None
    value: str | None = Field(None, description="Offending value, truncated and with PII masked")
    reason: str
    balance_minor: int | None = None
    rejected_at: AwareDatetime


class CaseEscalated(Event):
    """A case was opened for a person to handle."""

    ce_type: ClassVar[str] = "arrears.case.escalated.v1"
    topic: ClassVar[str] = topics.CASE_ESCALATED
    personal: ClassVar[tuple[str, ...]] = ("detail",)

    case_id: str
    reason: Literal[
        "callback_request",
        "no_response",
        "dispute",
        "hardship",
        "high_value",
        "broken_promise",
        "failed_payment",
        "unclear_reply",
        "delivery_failed",
        "possible_opt_out",
    ]
    priority: Literal["low", "normal", "high", "critical"]
    detail: str = ""
    opened_at: AwareDatetime


OverrideAction = Literal[
    "pause",
    "resume",
    "snooze",
    "skip_step",
    "approve_step",
    "send_now",
    "set_channel_preference",
    "mark_dispute",
    "do_not_contact",
    "resume_dunning",
    "record_promise",
    "record_contact",
]
# A contact a person made outside the platform (a call, a hand-written message), recorded by `record_contact`.
ManualContactChannel = Literal["call", "sms", "email", "letter", "visit", "other"]
ManualContactDirection = Literal["outbound", "inbound"]
ManualContactOutcome = Literal["reached", "no_answer", "left_message", "wrong_number", "refused", "other"]


class OverrideRequested(Event):
    """A person (or an escalation rule) changes an account's dunning: published by escalation, applied by
    the segmenter. `override_id` is unique; applying the same override twice must change nothing.

    - `pause` (until `until` or indefinitely) / `resume`; `snooze` = pause until `until` (required);
    - `skip_step` / `approve_step`: `step` of the current cycle (approve releases a step held for approval);
    - `send_now`: make `step` due now; it still passes the compliance gate unless `gate_override` is set,
      which only a supervisor may request and always with a `reason`;
    - `set_channel_preference`: `channels` in order of preference; with `contact_window` (optional, added
      within v1 instead of a new action value, which would be a closed-enum change) also the debtor's quiet
      times (None: unchanged; empty: cleared); with `channels_unchanged` the stored order stays (`channels`
      is ignored);
    - `mark_dispute`: hold the sequence as disputed; `do_not_contact`: stop `channels` (all if empty);
    - `resume_dunning`: a promise to pay was broken: clear the promise hold and continue the sequence;
    - `record_promise`: a person took a promise to pay (by phone, in person): hold the sequence until
      `promise_date` (in the debtor's zone), like a promise in a reply; a dispute hold stays;
    - `record_contact`: a person contacted the customer outside the platform (a call, a letter, a visit, a
      message from their own phone; `contact_*`, `contacted_at`; its note in `reason`). One that reached the
      customer moves the next automated step to at least `contacted_at` + the policy's
      `manual_contact_gap_hours`; any other outcome changes no plan. A promise taken in that contact comes
      as its own `record_promise`.

    A `record_promise` may carry an instalment plan (`promise_plan_every`, `plan_instalments`: the promise is
    the first instalment on `promise_date`) or the acceptance of a settlement offer (`settlement_offer_id`:
    the offer's amount by its last day); the segmenter holds the sequence the same way and confirms a plan
    with a `plan_confirmation`.
    """

    ce_type: ClassVar[str] = "arrears.override.requested.v1"
    topic: ClassVar[str] = topics.OVERRIDES
    personal: ClassVar[tuple[str, ...]] = ("reason",)

    override_id: str
    action: OverrideAction
    campaign_id: str | None = Field(None, description="Set when the override targets a whole campaign")
    until: AwareDatetime | None = None
    step: int | None = None
    channels: list[Channel] = Field(default_factory=list)
    gate_override: bool = False
    promise_date: date | None = Field(None, description="`record_promise`: the day the customer will pay by")
    promise_amount_minor: int | None = Field(
        None,
        ge=0,
        description="`record_promise`: the amount promised (minor units of the account's currency)",
    )
    promise_plan_every: Literal["week", "fortnight", "month"] | None = Field(
        None,
        description="`record_promise` of an instalment plan: `promise_amount_minor` is the first instalment, "
        "due on `promise_date`; the next ones follow every week / fortnight / month",
    )
    plan_instalments: int | None = Field(
        None, ge=1, le=520, description="`record_promise` of an instalment plan: how many instalments"
    )
    settlement_offer_id: str | None = Field(
        None,
        max_length=64,
        description="`record_promise`: the customer accepted this settlement offer "
        "(`arrears.settlement.offer.v1`); the promise is the offer's amount by its last day",
    )
    contact_id: str | None = Field(
        None, description="`record_contact`: the contact's id (stable: recording it again changes nothing)"
    )
    contact_channel: ManualContactChannel | None = Field(None, description="`record_contact`: how")
    contact_direction: ManualContactDirection | None = Field(
        None, description="`record_contact`: who reached out to whom"
    )
    contact_outcome: ManualContactOutcome | None = Field(
        None, description="`record_contact`: what came of it"
    )
    contacted_at: AwareDatetime | None = Field(
        None, description="`record_contact`: when the contact happened"
    )
    contact_window: ContactWindow | None = Field(
        None,
        description="`set_channel_preference`: the debtor's quiet times (not before / not after a local "
        "time, weekdays to avoid), which only narrow the legal contact window. None: the stored quiet times "
        "stay as they are; an empty window clears them",
    )
    channels_unchanged: bool = Field(
        False,
        description="`set_channel_preference`: keep the stored channel order and ignore `channels` (the "
        "debtor's portal saving only quiet times must not clear an order a collector set); optional, added "
        "within v1",
    )
    reason: str = Field("", max_length=2000)
    actor: str = Field(description="API key name of the person, or `rule:<id>` for an escalation rule")
    role: Literal["collector", "supervisor", "admin", "system", "agent"] = Field(
        description="Role of the actor; `agent` is the pre-`collector` name, kept for events already on the topic"
    )
    requested_at: AwareDatetime


class SettlementOfferChanged(Event):
    """A supervisor offered the customer a settlement (a reduced amount that settles the account if paid by
    `expires_on`, the customer's local day), or withdrew one (escalation). Travels on `overrides`, keyed by
    the account, so it stays in order with the customer's acceptance: a `record_promise` override carrying
    `settlement_offer_id` (the portal). The supervisor's note stays in escalation."""

    ce_type: ClassVar[str] = "arrears.settlement.offer.v1"
    topic: ClassVar[str] = topics.OVERRIDES

    offer_id: str = Field(min_length=1, max_length=64)
    status: Literal["offered", "withdrawn"]
    amount_minor: int = Field(gt=0, description="What the customer pays to settle (minor units)")
    currency: Currency
    balance_minor: int = Field(description="The balance the offer was made against (minor units)")
    expires_on: date = Field(description="Last day the offer can be accepted, and the day to pay it by")
    actor: str = Field(description="API key name of the supervisor")
    role: Literal["collector", "supervisor", "admin", "system"]
    changed_at: AwareDatetime


class PaymentRetryChanged(Event):
    """The failed-payment retry state of one payment changed (segmenter): `at_risk` (a failure, retries
    scheduled), `retry_sent` (a scheduled retry asked the customer to pay), `exhausted` (the last retry
    passed unpaid: a recovery task for people) or `cleared` (a payment arrived: pending retries cancelled).
    Travels on `account-changed` with the account's other facts; the account is at risk while any of its
    payments is `at_risk` or `retry_sent` or `exhausted`."""

    ce_type: ClassVar[str] = "arrears.payment.retry.v1"
    topic: ClassVar[str] = topics.ACCOUNT_CHANGED

    provider: str = Field(max_length=32)
    payment_id: str = Field(max_length=255)
    status: Literal["at_risk", "retry_sent", "exhausted", "cleared"]
    at_risk: bool = Field(description="Whether the account is still at risk after this change")
    failures: int = Field(ge=0, description="Failed attempts the gateway reported for this payment")
    retry_count: int = Field(ge=0, description="Scheduled retries done (the customer asked to pay again)")
    retries_max: int = Field(ge=0)
    next_retry_at: AwareDatetime | None = None
    amount_minor: int | None = None
    currency: Currency | None = None
    reason: str = Field("", max_length=200)
    changed_at: AwareDatetime


class TeamCalendarChanged(Event):
    """A team's working calendar as it now is (escalation, on every change and daily): its IANA time zone,
    weekly hours and holidays, for services that need to know when the team works (responses: the
    out-of-hours acknowledgement). State, not a diff: the latest `version` per team wins. `account_id` is
    `team:<team>` (the Kafka key, so one team's versions stay ordered); no personal data travels."""

    ce_type: ClassVar[str] = "arrears.team.calendar.v1"
    topic: ClassVar[str] = topics.TEAM_CALENDARS

    team: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1, description="Increases with every change of the team's calendar")
    timezone: str = Field(description="IANA time zone of the team")
    hours: dict[str, list[dict[str, str]]] = Field(
        description='Weekday ("mon".."sun") -> intervals [{"start": "09:00", "end": "17:00"}] in local time; '
        "an `end` not after its `start` runs past midnight; a missing weekday is closed"
    )
    holidays: list[dict[str, str]] = Field(
        default_factory=list, description='Closed local dates [{"date": "2026-12-25", "name": "Christmas"}]'
    )
    changed_at: AwareDatetime


class LinkClicked(Event):
    """A notice's personal payment link was opened for the first time (portal). One per notice at most: the
    link names the notice (`arrears_shared.links`), so the click is attributed to its message, channel and
    tier. Says nothing about who opened it: the visitor has not been verified yet. No personal data."""

    ce_type: ClassVar[str] = "arrears.link.clicked.v1"
    topic: ClassVar[str] = topics.LINK_CLICKED

    notice_id: str = Field(max_length=255, description="The notice whose link was opened")
    channel: Channel
    tier: Tier | None = Field(None, description="Tier of the notice (None for a non-dunning message)")
    issued_at: AwareDatetime = Field(description="When the link was minted (the notice's due time)")
    clicked_at: AwareDatetime


class RiskBand(StrEnum):
    """Bands of `AccountScored.risk_score`, the same cut-offs as the segmenter's rule score: low 0-33, medium 34-66,
    high 67-100."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ScoreReason(BaseModel):
    """One of a score's top reasons: a feature and how far it moved the risk score (points, + = riskier)."""

    model_config = TOLERANT

    feature: str = Field(max_length=64, description="Feature name (docs/scoring.md lists them)")
    label: str = Field(max_length=200, description="Plain-language reason shown to collectors")
    contribution: float = Field(description="Points of risk score this feature added (+) or removed (-)")


class AccountScored(Event):
    """The daily model run's view of one account (scoring job). Features use only what was known before
    `scored_on`; the model version names the stored model and its metrics. No personal data."""

    ce_type: ClassVar[str] = "arrears.account.scored.v1"
    topic: ClassVar[str] = topics.ACCOUNT_SCORED

    scored_on: date = Field(description="Prediction date (UTC day); one score per account per day")
    model_version: str = Field(max_length=64)
    risk_score: int = Field(ge=0, le=100, description="0 = will surely pay, 100 = will surely not")
    band: RiskBand
    p_pay_14d: float = Field(ge=0, le=1, description="Probability of a payment within 14 days")
    dropout_risk: float = Field(
        ge=0, le=1, description="Probability the customer stops responding or breaks a promise"
    )
    expected_recovery: float = Field(
        ge=0, le=1, description="Expected recovered fraction of the balance under settlement"
    )
    expected_recovery_minor: int = Field(ge=0, description="Expected recovered amount (minor units)")
    currency: Currency
    best_channel: Channel | None = Field(None, description="Channel most likely to get a payment, if any")
    best_hour: int | None = Field(None, ge=0, le=23, description="Local hour most likely to get a payment")
    reasons: list[ScoreReason] = Field(default_factory=list, max_length=5)
    scored_at: AwareDatetime
    features_as_of: AwareDatetime | None = Field(
        None,
        description="The moment the features were taken at: only what was known before it was used (the run's "
        "start on `scored_on`, or the end of that day for a past day)",
    )


def latest_per_account(events: Sequence[AccountScored]) -> list[AccountScored]:
    """The latest score of each account in a batch (`scored_on`, then `scored_at`; a tie: the later event),
    in account order (a stable lock order for the upsert that keeps it)."""
    out: dict[str, AccountScored] = {}
    for ev in events:
        cur = out.get(ev.account_id)
        if cur is None or (cur.scored_on, cur.scored_at) <= (ev.scored_on, ev.scored_at):
            out[ev.account_id] = ev
    return [out[k] for k in sorted(out)]


EVENT_TYPES: tuple[type[Event], ...] = (
    AccountChanged,
    NoticeDue,
    MessageSent,
    ReplyReceived,
    IngestRejected,
    CaseEscalated,
    OverrideRequested,
    SettlementOfferChanged,
    PaymentFailed,
    PaymentRetryChanged,
    TeamCalendarChanged,
    LinkClicked,
    AccountScored,
    DunningStopped,
)
BY_CE_TYPE: dict[str, type[Event]] = {t.ce_type: t for t in EVENT_TYPES}
# every type a topic carries, its main type first (account-changed also carries PaymentFailed)
TYPES_BY_TOPIC: dict[str, tuple[type[Event], ...]] = {
    topic: tuple(t for t in EVENT_TYPES if t.topic == topic)
    for topic in dict.fromkeys(t.topic for t in EVENT_TYPES)
}
BY_TOPIC: dict[str, type[Event]] = {topic: types[0] for topic, types in TYPES_BY_TOPIC.items()}


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of every event type, keyed by ce_type."""
    out: dict[str, dict[str, Any]] = {}
    for t in EVENT_TYPES:
        schema = t.model_json_schema(mode="serialization")
        schema["$id"] = f"https://arrears.dev/schemas/{t.ce_type}.json"
        schema["x-topic"] = t.topic
        for path in t.personal:
            _mark_personal(schema, schema, path.split("."))
        out[t.ce_type] = schema
    return out


SEALED_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^pii1:[A-Za-z0-9_-]+$",
    "description": "Sealed with the account's data key (AES-256-GCM; arrears_shared.vault)",
}


def _mark_personal(root: dict[str, Any], node: dict[str, Any], parts: list[str]) -> None:
    """Document a personal field's wire form: its plain schema or the sealed string that replaces it on topics
    and in outboxes (`x-arrears-personal`); `*` steps into a mapping's values."""
    while "$ref" in node or "anyOf" in node and parts[0] != "*":
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        else:
            node = next(b for b in node["anyOf"] if b.get("type") != "null")
    head, rest = parts[0], parts[1:]
    if head == "*" and "patternProperties" in node:  # a mapping with constrained keys
        holder, key = node["patternProperties"], next(iter(node["patternProperties"]))
    elif head == "*":
        holder, key = node, "additionalProperties"
    else:
        holder, key = node["properties"], head
    if rest:
        _mark_personal(root, holder[key], rest)
        return
    plain = holder[key]
    holder[key] = {
        "anyOf": [plain, SEALED_SCHEMA],
        "x-arrears-personal": True,
        **({"default": plain["default"]} if "default" in plain else {}),
    }


def utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
