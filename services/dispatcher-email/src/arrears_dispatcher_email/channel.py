"""The Gmail-specific part of email delivery: render (templates + MIME), send, reconcile."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from arrears_shared.delivery import DeliveryRow, Rendered, SendResult
from arrears_shared.delivery.render import notice_context, sample_notice, sandbox
from arrears_shared.events import Channel, NoticeDue, Tier
from jinja2 import TemplateError

from .gmail_client import GmailClient
from .mime import build_message, message_id_for, unsubscribe_url
from .settings import EmailSettings


def _html(name: str | None) -> bool:
    return name is not None and ".html" in name


class EmailTemplates:
    """Per tier: `email/<tier>.subject.j2`, `email/<tier>.txt.j2`, `email/<tier>.html.j2` (HTML autoescaped)."""

    def __init__(self, brand: str, unsubscribe_template: str) -> None:
        self.brand = brand
        self.unsubscribe_template = unsubscribe_template
        self.env = sandbox("arrears_dispatcher_email", "templates", autoescape=_html)

    def render(self, notice: NoticeDue) -> tuple[str, str, str, str]:
        """(subject, text, html, unsubscribe url). Raises ValueError when a template fails."""
        unsub = unsubscribe_url(self.unsubscribe_template, notice.notice_id)
        ctx = {**notice_context(notice, self.brand), "unsubscribe_url": unsub}
        t = notice.tier.value
        try:
            subject = self.env.get_template(f"email/{t}.subject.j2").render(ctx)
            text = self.env.get_template(f"email/{t}.txt.j2").render(ctx)
            html = self.env.get_template(f"email/{t}.html.j2").render(ctx)
        except TemplateError as e:
            raise ValueError(f"email templates for {t}: {type(e).__name__}: {e}") from e
        if not subject.strip():
            raise ValueError(f"email/{t}.subject.j2 rendered an empty subject")
        if unsub not in text or unsub not in html:
            raise ValueError(f"email templates for {t} must include the unsubscribe link")
        return subject, text, html, unsub

    def validate(self) -> None:
        """Render every tier with a sample notice; raises at start-up if any template is broken."""
        for tier in Tier:
            self.render(sample_notice(tier, Channel.EMAIL, "sample@example.com"))


class EmailChannel:
    channel = "email"
    provider = "gmail"

    def __init__(self, settings: EmailSettings, client: GmailClient | None = None) -> None:
        self.settings = settings
        self.sender = settings.gmail_sender
        self.limiter_name = f"gmail:{settings.gmail_sender or 'default'}"
        self.rate_per_s = settings.gmail_rate_per_s
        self.burst = settings.gmail_rate_burst
        self.templates = EmailTemplates(settings.brand_name, settings.email_unsubscribe_url)
        self.client = client or make_client(settings)

    def render(self, notice: NoticeDue) -> Rendered:
        subject, text, html, unsub = self.templates.render(notice)
        raw = build_message(
            notice_id=notice.notice_id,
            to=notice.to,
            to_name=notice.customer_name,
            sender=self.sender,
            sender_name=self.settings.brand_name,
            subject=subject,
            text_body=text,
            html_body=html,
            unsubscribe=unsub,
            date=datetime.now(UTC),
        )
        return {"raw": base64.b64encode(raw).decode("ascii")}

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        sent = await self.client.send_raw(base64.b64decode(rendered["raw"]), None)
        return SendResult(sent.id, sent.thread_id)

    async def reconcile(self, row: DeliveryRow) -> str | None:
        """Was this notice accepted by Gmail before we lost the answer? Search by its deterministic
        Message-ID (`rfc822msgid:`), which Gmail indexes; custom X- headers are not searchable there."""
        found = await self.client.find_by_message_id(message_id_for(row.notice_id, self.sender))
        return found[0] if found else None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.client.close)


def make_client(s: EmailSettings) -> GmailClient:
    """Static token (emulator), service account acting as the sender, or an authorized-user file."""
    common = {"api_endpoint": s.gmail_api_endpoint, "timeout_s": s.gmail_timeout_s}
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
