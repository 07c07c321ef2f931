"""Responses settings (all `ARREARS_*` variables)."""

from __future__ import annotations

from arrears_shared.providers.gmail import MAILBOXES_DESCRIPTION, GmailMailbox
from arrears_shared.settings import ServiceSettings
from arrears_shared.webhook_dedupe import WebhookDedupeSettings
from pydantic import Field, SecretStr


class ResponsesSettings(ServiceSettings, WebhookDedupeSettings):
    service_name: str = "responses"
    http_port: int = 8005

    quo_webhook_signing_key: SecretStr | None = Field(
        None,
        description="Base64 signing key of a legacy QUO (OpenPhone) webhook (openphone-signature header);"
        " unset = legacy webhooks are rejected",
    )
    quo_webhook_secret: SecretStr | None = Field(
        None,
        description="whsec_ secret of a QUO webhook of the new system (Standard Webhooks: webhook-id,"
        " webhook-timestamp, webhook-signature); unset = such webhooks are rejected",
    )
    responses_webhook_tolerance_s: int = Field(
        300,
        gt=0,
        description="Max age (seconds) of a webhook signature timestamp; older = replay, rejected"
        " (the Standard Webhooks library also caps it at 300)",
    )

    responses_brand_name: str = Field("Arrears Collections", description="Creditor name in automatic answers")
    responses_help_text: str = Field(
        "{brand}: messages about your account. Reply to this number or call us to talk to a person. "
        "Msg&data rates may apply. Reply STOP to opt out.",
        max_length=1600,
        description="Answer to an SMS HELP (`{brand}` is replaced); must name the opt-out",
    )
    responses_opt_out_confirmation_text: str = Field(
        "{brand}: you are unsubscribed and will get no more text messages from us.",
        max_length=1600,
        description="The one confirmation sent after an SMS opt-out (`{brand}` is replaced)",
    )
    responses_help_interval_s: float = Field(
        3600.0, ge=0, description="At most one HELP answer per number in this many seconds"
    )
    responses_auto_reply_expiry_s: float = Field(
        86400.0, gt=0, description="An automatic answer not sent within this many seconds is dropped"
    )
    responses_auto_replies: bool = Field(
        True, description="Answer SMS HELP and confirm SMS opt-outs (through notice-due -> dispatcher-sms)"
    )
    responses_out_of_hours_ack: bool = Field(
        False,
        description="Acknowledge a reply that arrives while the owning team is closed (SMS, WhatsApp, email), "
        "once per conversation per closed period, with the next opening time (needs dispatchers that know the "
        "`out_of_hours_ack` purpose)",
    )
    responses_out_of_hours_team: str = Field(
        "collectors",
        min_length=1,
        max_length=64,
        description="The team whose working calendar (from `team-calendars`) decides when replies are out of hours",
    )
    responses_out_of_hours_text_en: str = Field(
        "{brand}: thanks for your message. We're closed right now; we'll reply by {opens}. "
        "Reply STOP to opt out.",
        max_length=1600,
        description="Out-of-hours acknowledgement in English (`{brand}`, `{opens}` = the next opening time); "
        "sent without a footer, so it names the opt-out itself",
    )
    responses_out_of_hours_text_es: str = Field(
        "{brand}: gracias por su mensaje. Ahora estamos cerrados; le responderemos antes de {opens}. "
        "Responda STOP para no recibir más mensajes.",
        max_length=1600,
        description="Out-of-hours acknowledgement in Spanish (`{brand}`, `{opens}`)",
    )
    responses_default_locale: str = Field(
        "en", pattern=r"^(en|es)$", description="Language of automatic texts when the reply's cannot be told"
    )

    def out_of_hours_texts(self) -> dict[str, str]:
        return {"en": self.responses_out_of_hours_text_en, "es": self.responses_out_of_hours_text_es}

    responses_intent_review_below: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A reply the model is less sure of than this (calibrated probability) is not acted on:"
        " intent `other`, flagged for a person with the model's guess",
    )
    responses_intent_possible_opt_out_at: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Fail-safe: an opt-out probability at least this (and not a confident opt-out) pauses"
        " messages on that channel to the account until a person decides",
    )
    responses_intent_opt_out_at: float = Field(
        0.7,
        ge=0,
        le=1,
        description="An opt-out is permanent: the model acts on one only at this confidence or above; a less"
        " sure opt-out pauses messages (fail-safe) until a person decides",
    )
    responses_intent_model_refresh_s: float = Field(
        60.0, gt=0, description="Seconds between checks for a newly activated intent model"
    )

    responses_gmail_enabled: bool = Field(
        False, description="Poll the Gmail mailbox for replies, bounces and automatic replies"
    )
    gmail_api_endpoint: str | None = Field(
        None, description="Gmail API root (None = Google's); the emulator's URL in tests and `arrears up`"
    )
    gmail_token: SecretStr | None = Field(
        None, description="OAuth access token of the mailbox (or use a file)"
    )
    gmail_credentials_file: str | None = Field(
        None, description="Service-account JSON with domain-wide delegation acting as ARREARS_GMAIL_SENDER"
    )
    gmail_sender: str = Field("", description="The collections mailbox address (replies arrive here)")
    gmail_mailboxes: list[GmailMailbox] = Field(
        default_factory=list,
        description=MAILBOXES_DESCRIPTION,
    )
    gmail_timeout_s: float = Field(15.0, gt=0, description="HTTP timeout of one Gmail request")
    responses_gmail_poll_s: float = Field(
        30.0, gt=0, description="Seconds between history.list polls (a Pub/Sub push polls at once)"
    )
    responses_gmail_max_per_poll: int = Field(
        500, gt=0, description="Messages handled per poll (the cursor advances only past handled ones)"
    )
    responses_gmail_resync_days: int = Field(
        7, gt=0, description="Full resync after an expired history id reads the inbox of this many days"
    )
    responses_gmail_watch_topic: str | None = Field(
        None,
        pattern=r"^projects/[^/]+/topics/[^/]+$",
        description="Pub/Sub topic of the Gmail push (users.watch), renewed daily; unset = no watch (polling only)",
    )
    responses_gmail_watch_renew_s: float = Field(
        86400.0, gt=0, le=6 * 86400, description="Seconds between users.watch renewals (a watch lasts 7 days)"
    )
    responses_gmail_watch_check_s: float = Field(
        300.0,
        gt=0,
        description="Seconds between checks whether the watch renewal is due (one replica renews)",
    )
    responses_gmail_push_audience: str | None = Field(
        None,
        description="`aud` the Pub/Sub push's OIDC token must carry (the subscription's audience, by default "
        "its push endpoint URL); unset = push refused",
    )
    responses_gmail_push_service_account: str | None = Field(
        None,
        description="Service account (`email` of the push's OIDC token) the push subscription authenticates "
        "as; required with the audience",
    )
    responses_gmail_push_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description="Where the certificates that sign push tokens are fetched (Google's; the Gmail emulator "
        "serves its own at /oauth2/v1/certs)",
    )
    responses_gmail_push_certs_cache_s: float = Field(
        300.0, ge=0, description="Seconds the push-token certificates are cached"
    )
