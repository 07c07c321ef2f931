"""The Gmail-specific part of email delivery: render (templates + MIME), send, reconcile."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import TemplateError

from arrears_shared.delivery import DeliveryRow, Rendered, SendResult
from arrears_shared.delivery.render import notice_context, sandbox
from arrears_shared.events import NoticeDue, Tier

from .gmail_client import GmailClient
from .mime import NOTICE_HEADER, build_message, unsubscribe_url
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
        from arrears_dispatcher_sms_sample import sample  # noqa: F401  # pragma: no cover
