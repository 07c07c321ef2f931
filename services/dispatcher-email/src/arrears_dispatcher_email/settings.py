"""dispatcher-email settings (`ARREARS_*`)."""

from __future__ import annotations

from arrears_shared.delivery import DispatchSettings
from arrears_shared.providers.gmail import MAILBOXES_DESCRIPTION, GmailMailbox
from pydantic import Field, SecretStr, model_validator


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
    email_disclosure: str = Field(
        "This communication is from a debt collector. This is an attempt to collect a debt and any"
        " information obtained will be used for that purpose.",
        description="Required disclosure every email carries (text and HTML part); empty = none",
    )
    email_postal_address: str = Field(
        "", description="Sender's postal address shown in every email footer (CAN-SPAM); empty = none"
    )
    email_templates_dir: str | None = Field(
        None,
        description="Folder whose email/[<locale>/]<name>.{subject,txt,html}.j2 override the packaged ones",
    )
    email_default_locale: str = Field("en", description="Language of the templates at the email/ root")
    gmail_daily_quota: int | None = Field(
        2000,
        ge=1,
        description="Sends per rolling 24 hours of the mailbox, all replicas together (Workspace ~2000, consumer"
        " ~500); when used up (or Gmail answers 429 Mail sending), email goes by the SMTP relay if configured,"
        " else waits until the window frees",
    )
    gmail_mailboxes: list[GmailMailbox] = Field(
        default_factory=list,
        description=MAILBOXES_DESCRIPTION,
    )
    gmail_mailbox_overflow: bool = Field(
        False,
        description="A pool mailbox at its daily quota hands accounts it has never written to over to a"
        " mailbox with quota left (accounts it wrote to always wait for it)",
    )
    gmail_mailbox_auth_pause_s: float = Field(
        300.0,
        gt=0,
        description="A pool mailbox whose credentials Gmail refuses pauses this long (its accounts wait; the"
        " other mailboxes go on)",
    )
    smtp_host: str | None = Field(
        None, description="SMTP relay host for the fallback route; None = no fallback"
    )
    smtp_port: int = Field(587, description="SMTP relay port (587 submission + STARTTLS, 465 implicit TLS)")
    smtp_username: str | None = Field(None, description="SMTP AUTH user name (None = no AUTH)")
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password")
    smtp_starttls: bool = Field(True, description="Upgrade with STARTTLS (required when the relay offers it)")
    smtp_implicit_tls: bool = Field(False, description="Connect with TLS from the start (port 465)")
    smtp_timeout_s: float = Field(15.0, gt=0, description="Timeout of one SMTP transaction")
    smtp_rate_per_s: float = Field(5.0, gt=0, description="Sends per second through the relay, all replicas")

    @model_validator(mode="after")
    def _one_entry_per_mailbox(self) -> EmailSettings:
        seen = [m.address for m in self.gmail_mailboxes]
        if len(seen) != len(set(seen)):
            raise ValueError("ARREARS_GMAIL_MAILBOXES lists a mailbox twice")
        return self

    @property
    def pooled(self) -> bool:
        """Several sending mailboxes (or one declared as a pool) rather than the single ARREARS_GMAIL_SENDER."""
        return bool(self.gmail_mailboxes)
