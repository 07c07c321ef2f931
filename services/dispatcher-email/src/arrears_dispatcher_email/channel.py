"""The email-specific part of delivery: render (templates + MIME), send by the Gmail API (primary route) or
an SMTP relay (fallback route), reconcile by the deterministic Message-ID."""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from arrears_shared.delivery import CannotReconcile, DeliveryRow, Rendered, SendResult, ThreadRef
from arrears_shared.delivery.render import notice_context, sample_notice
from arrears_shared.delivery.templates import TemplateSet, locale_chain
from arrears_shared.events import NoticeDue, Tier
from arrears_shared.providers.errors import ProviderAuthError, ProviderQuotaExhausted, ProviderRateLimited
from arrears_shared.providers.gmail import GmailClient, GmailMailbox, mailbox_client
from jinja2 import TemplateError, TemplateNotFound

from . import metrics
from .mime import build_message, message_id_for, unsubscribe_url
from .pool import MailboxPool
from .settings import EmailSettings
from .smtp_client import SmtpRelay

log = logging.getLogger(__name__)
# Automatic answers sent as a plain-text email around the notice's `text`, from
# `email/[<locale>/]<purpose>.subject.j2` / `.txt.j2` (never a dunning template), marked auto-replied.
PLAIN_ANSWERS = frozenset({"out_of_hours_ack"})
AUTO_SUBMITTED = "auto-replied"  # RFC 3834: an answer to the customer's own message


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
            "text": notice.text or "",  # an automatic answer's exact text (empty for dunning)
        }

    def _render_named(self, notice: NoticeDue, ctx: dict[str, Any], suffix: str) -> str:
        """`email/[<locale>/]<purpose><suffix>`: only the purpose's own template, never a tier's."""
        names = [
            f"email/{loc}/{notice.purpose}{suffix}" if loc else f"email/{notice.purpose}{suffix}"
            for loc in locale_chain(notice.locale, self.templates.default_locale)
        ]
        try:
            return self.templates.env.select_template(names).render(ctx)
        except TemplateNotFound as e:
            raise ValueError(f"no template among {names}") from e
        except TemplateError as e:
            raise ValueError(f"template for {notice.purpose}: {type(e).__name__}: {e}") from e

    def render_plain(self, notice: NoticeDue) -> tuple[str, str, str]:
        """An automatic answer (`PLAIN_ANSWERS`): (subject, text, unsubscribe url). The text carries the
        unsubscribe link and the disclosures like every email. Raises ValueError when a template fails."""
        if not notice.text:
            raise ValueError(f"{notice.purpose} without a text")
        ctx = self.context(notice)
        unsub = ctx["unsubscribe_url"]
        subject = self._render_named(notice, ctx, ".subject.j2")
        text = self._render_named(notice, ctx, ".txt.j2")
        if not subject.strip():
            raise ValueError(f"email template for {notice.purpose} rendered an empty subject")
        if unsub not in text or notice.text not in text:
            raise ValueError(
                f"email template for {notice.purpose} must include the text and unsubscribe link"
            )
        for required in (self.disclosure, self.postal_address):
            if required and required not in text:
                raise ValueError(f"email template for {notice.purpose} must include the disclosures")
        return subject, text, unsub

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
            for purpose in PLAIN_ANSWERS:
                answer = {"locale": locale, "purpose": purpose, "text": "Sample text."}
                self.render_plain(sample.model_copy(update=answer))


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
        sender = rendered.get("mailbox") or self.sender  # a pool's row goes from its account's mailbox
        await self.relay.send_raw(raw, sender, [row.to_address])
        return SendResult(message_id_for(row.notice_id, sender))


class EmailChannel:
    """One mailbox (`ARREARS_GMAIL_SENDER`), or a pool of them (`ARREARS_GMAIL_MAILBOXES`, see `.pool`).

    With a pool the channel's own limiter paces the pool as a whole (the sum of the mailboxes' rates) and has
    no daily quota of its own: each mailbox has its quota, pace and pause, decided per row by the pool's
    check. Gmail's refusals of one mailbox (its sending limit, its per-user rate, its credentials) pause that
    mailbox only and come back to the engine as a short rate limit: the row is requeued without counting an
    attempt, and the pool's check holds it until its mailbox can send."""

    channel = "email"
    provider = "gmail"
    threaded = True

    def __init__(self, settings: EmailSettings, client: GmailClient | None = None) -> None:
        self.settings = settings
        self.pool: MailboxPool | None = None
        self.clients: dict[str, GmailClient] = {}
        self.burst = settings.gmail_rate_burst
        if settings.pooled:
            self.pool = MailboxPool(
                settings.gmail_mailboxes,
                legacy_sender=settings.gmail_sender,
                overflow=settings.gmail_mailbox_overflow,
                burst=settings.gmail_rate_burst,
            )
            self.sender = self.pool.sending[0].address
            self.limiter_name = "gmail:pool"
            self.rate_per_s = self.pool.rate_per_s
            self.daily_quota: int | None = None
        else:
            self.sender = settings.gmail_sender
            self.limiter_name = f"gmail:{settings.gmail_sender or 'default'}"
            self.rate_per_s = settings.gmail_rate_per_s
            self.daily_quota = settings.gmail_daily_quota
        self.templates = EmailTemplates(
            settings.brand_name,
            settings.email_unsubscribe_url,
            disclosure=settings.email_disclosure,
            postal_address=settings.email_postal_address,
            override_dir=settings.email_templates_dir,
            default_locale=settings.email_default_locale,
        )
        if self.pool is not None:
            self.clients = {a: make_mailbox_client(settings, m) for a, m in self.pool.mailboxes.items()}
            self.client = self.clients[self.sender]
        else:
            self.client = client or make_client(settings)
        self.fallback: SmtpRoute | None = (
            SmtpRoute(settings, make_relay(settings)) if settings.smtp_host else None
        )

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered:
        sender, sender_name = self.sender, self.settings.brand_name
        if self.pool is not None:
            # the pool's check chose the mailbox just before (no await in between): see `MailboxPool.check`
            choice = self.pool.chosen.pop(notice.notice_id, None)
            if choice is None:
                raise RuntimeError(f"no sending mailbox chosen for {notice.notice_id}")
            sender, sender_name = choice.mailbox.address, choice.mailbox.display_name or sender_name
            if choice.new_thread and thread is not None:
                thread = ThreadRef(thread.notice_ids, None)  # another mailbox's Gmail thread id is not ours
        references = [message_id_for(n, sender) for n in thread.notice_ids] if thread else []
        auto_submitted: str | None = None
        body: str | None
        if notice.purpose in PLAIN_ANSWERS:
            subject, text, unsub = self.templates.render_plain(notice)
            body, auto_submitted = None, AUTO_SUBMITTED
            if notice.in_reply_to:  # the customer's message is the one answered: it threads under it
                references.append(notice.in_reply_to)
        else:
            subject, text, body, unsub = self.templates.render(notice)
        raw = build_message(
            notice_id=notice.notice_id,
            to=notice.to,
            to_name=notice.customer_name,
            sender=sender,
            sender_name=sender_name,
            subject=subject,
            text_body=text,
            html_body=body,
            unsubscribe=unsub,
            date=datetime.now(UTC),
            references=references,
            auto_submitted=auto_submitted,
        )
        out: Rendered = {"raw": base64.b64encode(raw).decode("ascii")}
        if thread and thread.thread_id:
            out["thread_id"] = thread.thread_id
        if self.pool is not None:
            out["mailbox"] = sender
        return out

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        if self.pool is None:
            sent = await self.client.send_raw(base64.b64decode(rendered["raw"]), rendered.get("thread_id"))
            return SendResult(sent.id, sent.thread_id)
        return await self._send_from_pool(rendered)

    async def _send_from_pool(self, rendered: Rendered) -> SendResult:
        assert self.pool is not None
        mailbox = self.pool.mailbox_of(rendered)
        client = self.clients.get(mailbox)
        if client is None:  # removed from the pool since it was rendered: back to the queue, rendered again
            raise ProviderRateLimited(0.0, f"mailbox {mailbox} is no longer configured", provider="gmail")
        now = datetime.now(UTC)
        try:
            sent = await client.send_raw(base64.b64decode(rendered["raw"]), rendered.get("thread_id"))
        except ProviderQuotaExhausted as e:
            # this mailbox's sending limit (429 "Mail sending", 403 dailyLimitExceeded): it alone waits
            metrics.MAILBOX_ERRORS.labels(mailbox, "quota").inc()
            await self.pool.pause(mailbox, now + timedelta(seconds=e.retry_after_s), e.message)
            raise ProviderRateLimited(
                0.0, f"{mailbox}: {e.message}", provider="gmail", status=e.status
            ) from e
        except ProviderRateLimited as e:
            # this mailbox's per-user rate: its own limiter waits, not the pool's
            metrics.MAILBOX_ERRORS.labels(mailbox, "rate").inc()
            await self.pool.slow_down(mailbox, now + timedelta(seconds=max(e.retry_after_s, 0.1)))
            raise ProviderRateLimited(
                0.0, f"{mailbox}: {e.message}", provider="gmail", status=e.status
            ) from e
        except ProviderAuthError as e:
            # one mailbox's credentials (a revoked token, a delegation removed): it pauses, the others go on
            metrics.MAILBOX_ERRORS.labels(mailbox, "auth").inc()
            log.error("Gmail refused a sending mailbox's credentials", extra={"mailbox": mailbox})
            pause = timedelta(seconds=self.settings.gmail_mailbox_auth_pause_s)
            await self.pool.pause(mailbox, now + pause, f"credentials refused: {e.message}")
            raise ProviderRateLimited(0.0, f"{mailbox}: credentials refused", provider="gmail") from e
        return SendResult(sent.id, sent.thread_id)

    async def reconcile(self, row: DeliveryRow) -> str | None:
        """Was this notice accepted before we lost the answer? Search the mailbox by its deterministic
        Message-ID (`rfc822msgid:`), which Gmail indexes (custom X- headers are not searchable there).
        A relay (Google's smtp-relay) files what it sends in the mailbox too; a relay that does not
        cannot be asked, so an SMTP send that is not found cannot be resent safely."""
        client, sender = self.client, self.sender
        if self.pool is not None:
            # asked only of the mailbox that may have sent it; a notice in doubt is never sent by another
            sender = self.pool.mailbox_of(row.rendered)
            found_client = self.clients.get(sender)
            if found_client is None:
                raise CannotReconcile(f"mailbox {sender} is no longer configured; cannot ask it")
            client = found_client
        message_id = message_id_for(row.notice_id, sender)
        found = await client.find_by_message_id(message_id)
        if found:
            return found[0]
        if row.route == "fallback":
            raise CannotReconcile(f"sent by the SMTP relay; {message_id} not found in the mailbox")
        return None

    async def aclose(self) -> None:
        for client in {id(c): c for c in [self.client, *self.clients.values()]}.values():
            await asyncio.to_thread(client.close)


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


def make_mailbox_client(s: EmailSettings, mailbox: GmailMailbox) -> GmailClient:
    """A pool mailbox's client: its own credentials, else the service's (domain-wide delegation: the
    service account acts as each mailbox)."""
    return mailbox_client(
        mailbox,
        api_endpoint=s.gmail_api_endpoint,
        timeout_s=s.gmail_timeout_s,
        default_token=s.gmail_token,
        default_credentials_file=s.gmail_credentials_file,
        max_workers=s.dispatch_max_in_flight,
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
