"""The email-specific part of delivery: render (templates + MIME), send by the Gmail API (primary route) or
an SMTP relay (fallback route), reconcile by the deterministic Message-ID."""

from __future__ import annotations

import asyncio
import base64
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arrears_shared.delivery import CannotReconcile, DeliveryRow, Rendered, SendResult, ThreadRef
from arrears_shared.delivery.render import notice_context, sample_notice
from arrears_shared.delivery.templates import TemplateSet
from arrears_shared.events import NoticeDue, Tier
from arrears_shared.providers.gmail import GmailClient

from .mime import build_message, message_id_for, unsubscribe_url
from .settings import EmailSettings
from .smtp_client import SmtpRelay


def _html(name: str | None) -> bool:
    return name is not None and ".html" in name


class EmailTemplates:
    """Per step/tier and locale: `email/[<locale>/]<name>.subject.j2`, `.txt.j2`, `.html.j2` (HTML
    autoescaped). Every email must carry the unsubscribe link and the configured disclosure."""

    def __init__(
        self,
        brand: str,
        unsubscribe_template: str,
        *,
        disclosure: str = "",
        postal_address: str = "",
        override_dir: str | None = None,
        default_locale: str = "en",
    ) -> None:
        self.brand = brand
        self.unsubscribe_template = unsubscribe_template
        self.disclosure = disclosure
        self.postal_address = postal_address
        self.templates = TemplateSet(
            "arrears_dispatcher_email",
            "email",
            override_dir=override_dir,
            autoescape=_html,
            default_locale=default_locale,
        )

    def context(self, notice: NoticeDue) -> dict[str, Any]:
        return {
            **notice_context(notice, self.brand),
            "unsubscribe_url": unsubscribe_url(self.unsubscribe_template, notice.notice_id),
            "disclosure": self.disclosure,
            "postal_address": self.postal_address,
        }

    def render(self, notice: NoticeDue) -> tuple[str, str, str, str]:
        """(subject, text, html, unsubscribe url). Raises ValueError when a template fails."""
        ctx = self.context(notice)
        unsub = ctx["unsubscribe_url"]
        subject = self.templates.render(notice, ctx, ".subject.j2")
        text = self.templates.render(notice, ctx, ".txt.j2")
        body = self.templates.render(notice, ctx, ".html.j2")
        name = f"email templates for {notice.template_id}/{notice.tier.value}"
        if not subject.strip():
            raise ValueError(f"{name} rendered an empty subject")
        if unsub not in text or html.escape(unsub) not in body:
            raise ValueError(f"{name} must include the unsubscribe link in the text and HTML parts")
        for required in (self.disclosure, self.postal_address):
            if required and (required not in text or html.escape(required) not in body):
                raise ValueError(f"{name} must include the disclosure and postal address in both parts")
        return subject, text, body, unsub

    def validate(self) -> None:
        """At start-up: only known variables, and every tier in every locale renders with the required
        unsubscribe link and disclosures. Raises naming the template."""
        sample = sample_notice(Tier.REMINDER, "email", "sample@example.com")
        self.templates.check_variables(self.context(sample))
        for locale in self.templates.locales():
            for tier in Tier:
                n = sample_notice(tier, "email", "sample@example.com")
                self.render(n.model_copy(update={"locale": locale}))


class SmtpRoute:
    """Fallback route: the same rendered message through an SMTP relay."""

    provider = "smtp"

    def __init__(self, settings: EmailSettings, relay: SmtpRelay) -> None:
        self.relay = relay
        self.sender = settings.gmail_sender
        self.limiter_name = f"smtp:{relay.host}:{settings.gmail_sender}"
        self.rate_per_s = settings.smtp_rate_per_s
        self.burst = 1.0

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        raw = base64.b64decode(rendered["raw"])
        await self.relay.send_raw(raw, self.sender, [row.to_address])
        return SendResult(message_id_for(row.notice_id, self.sender))


class EmailChannel:
    channel = "email"
    provider = "gmail"
    threaded = True

    def __init__(self, settings: EmailSettings, client: GmailClient | None = None) -> None:
        self.settings = settings
        self.sender = settings.gmail_sender
        self.limiter_name = f"gmail:{settings.gmail_sender or 'default'}"
        self.rate_per_s = settings.gmail_rate_per_s
        self.burst = settings.gmail_rate_burst
        self.daily_quota = settings.gmail_daily_quota
        self.templates = EmailTemplates(
            settings.brand_name,
            settings.email_unsubscribe_url,
            disclosure=settings.email_disclosure,
            postal_address=settings.email_postal_address,
            override_dir=settings.email_templates_dir,
            default_locale=settings.email_default_locale,
        )
        self.client = client or make_client(settings)
        self.fallback: SmtpRoute | None = (
            SmtpRoute(settings, make_relay(settings)) if settings.smtp_host else None
        )

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered:
        subject, text, body, unsub = self.templates.render(notice)
        references = [message_id_for(n, self.sender) for n in thread.notice_ids] if thread else []
        raw = build_message(
            notice_id=notice.notice_id,
            to=notice.to,
            to_name=notice.customer_name,
            sender=self.sender,
            sender_name=self.settings.brand_name,
            subject=subject,
            text_body=text,
            html_body=body,
            unsubscribe=unsub,
            date=datetime.now(UTC),
            references=references,
        )
        out: Rendered = {"raw": base64.b64encode(raw).decode("ascii")}
        if thread and thread.thread_id:
            out["thread_id"] = thread.thread_id
        return out

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        sent = await self.client.send_raw(base64.b64decode(rendered["raw"]), rendered.get("thread_id"))
        return SendResult(sent.id, sent.thread_id)

    async def reconcile(self, row: DeliveryRow) -> str | None:
        """Was this notice accepted before we lost the answer? Search the mailbox by its deterministic
        Message-ID (`rfc822msgid:`), which Gmail indexes (custom X- headers are not searchable there).
        A relay (Google's smtp-relay) files what it sends in the mailbox too; a relay that does not
        cannot be asked, so an SMTP send that is not found cannot be resent safely."""
        message_id = message_id_for(row.notice_id, self.sender)
        found = await self.client.find_by_message_id(message_id)
        if found:
            return found[0]
        if row.route == "fallback":
            raise CannotReconcile(f"sent by the SMTP relay; {message_id} not found in the mailbox")
        return None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.client.close)


def make_relay(s: EmailSettings) -> SmtpRelay:
    assert s.smtp_host is not None
    return SmtpRelay(
        host=s.smtp_host,
        port=s.smtp_port,
        username=s.smtp_username,
        password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        starttls=s.smtp_starttls,
        implicit_tls=s.smtp_implicit_tls,
        timeout_s=s.smtp_timeout_s,
    )


def make_client(s: EmailSettings) -> GmailClient:
    """Static token (emulator), service account acting as the sender, or an authorized-user file."""
    common: dict[str, Any] = {
        "api_endpoint": s.gmail_api_endpoint,
        "timeout_s": s.gmail_timeout_s,
        "max_workers": s.dispatch_max_in_flight,  # the blocking calls of the concurrent sends
    }
    if s.gmail_token is not None:
        return GmailClient.from_user_token(token=s.gmail_token.get_secret_value(), **common)
    if s.gmail_credentials_file:
        info = json.loads(Path(s.gmail_credentials_file).read_text())
        if info.get("type") == "service_account":
            return GmailClient.from_service_account_file(
                s.gmail_credentials_file, subject=s.gmail_sender, **common
            )
        return GmailClient.from_user_token(
            token=info.get("token"),
            refresh_token=info.get("refresh_token"),
            client_id=info.get("client_id"),
            client_secret=info.get("client_secret"),
            **common,
        )
    raise ValueError("set ARREARS_GMAIL_TOKEN or ARREARS_GMAIL_CREDENTIALS_FILE for dispatcher-email")
