"""The WhatsApp-specific part of delivery: render, send, reconcile.

Render:

- a dunning notice is always an approved message template (WhatsApp allows nothing else outside a
  conversation the customer opened), chosen by the template mapping (`templates.py`);
- a reply answer (a non-dunning notice: the HELP text, the opt-out confirmation) answers a message the
  customer just sent. The responses service sets its ``due_at`` to the time the customer's message was
  received, which opened WhatsApp's 24-hour customer-service window. While that window has at least
  ``ARREARS_WHATSAPP_WINDOW_MARGIN_S`` left, the answer goes as free-form text (the notice's ``text``), with
  the purpose's template kept beside it; after that it goes as the purpose's template (``answers`` in the
  mapping), and without one it cannot be sent (failed permanently: "outside the 24-hour window").
  Should the API still refuse the text as outside the window (131047: the window closed between render and
  send), the same send call sends the template instead — the refused text was not delivered, so the
  customer gets exactly one answer.

Send: one ``POST /messages`` with ``biz_opaque_callback_data`` = the notice id, so every status webhook of
the message names the notice it belongs to.

Reconcile: the Cloud API has no way to look up a message we sent (no list or get of outgoing messages, no
idempotency key), so an in-doubt send (timeout after the request was written, a dropped answer) cannot be
settled: `reconcile` raises `CannotReconcile` and the engine fails the delivery and dead-letters it. It is
never resent automatically: a duplicate dunning message is worse than a missing one, which a person can
replay from the DLQ after checking the status webhooks (a ``sent`` status carrying the notice id means it
went out).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from arrears_shared.delivery import CannotReconcile, DeliveryRow, Rendered, SendResult, ThreadRef, Undelivered
from arrears_shared.events import NoticeDue

from .graph_client import WhatsAppClient, WindowClosed
from .settings import WhatsAppSettings
from .templates import WhatsAppTemplates

WINDOW = timedelta(hours=24)
MAX_TEXT = 4096  # Cloud API limit of a text message body
log = logging.getLogger(__name__)


class WhatsAppChannel:
    channel = "whatsapp"
    provider = "whatsapp-cloud"

    def __init__(
        self,
        settings: WhatsAppSettings,
        client: WhatsAppClient | None = None,
        templates: WhatsAppTemplates | None = None,
    ) -> None:
        self.settings = settings
        self.limiter_name = f"whatsapp:{settings.whatsapp_phone_number_id or 'default'}"
        self.rate_per_s = settings.whatsapp_rate_per_s
        self.burst = settings.whatsapp_rate_burst
        self.window_margin = timedelta(seconds=settings.whatsapp_window_margin_s)
        self.templates = templates or WhatsAppTemplates(
            settings.brand_name,
            path=settings.whatsapp_templates_file,
            default_locale=settings.whatsapp_default_locale,
        )
        self.client = client or WhatsAppClient(
            access_token=settings.whatsapp_access_token.get_secret_value(),
            phone_number_id=settings.whatsapp_phone_number_id,
            base_url=settings.whatsapp_base_url,
            api_version=settings.whatsapp_api_version,
            timeout_s=settings.whatsapp_timeout_s,
            connect_timeout_s=settings.whatsapp_connect_timeout_s,
            max_connections=settings.whatsapp_max_connections,
        )

    # -- render ----------------------------------------------------------------------------------------
    def window_ends_at(self, notice: NoticeDue) -> datetime:
        """When the customer-service window a reply answer relies on closes (its `due_at` is the time the
        customer's message was received)."""
        return notice.due_at + WINDOW

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered:
        if notice.is_dunning:
            chosen = self.templates.dunning(notice)
            return {**chosen.message(), "via": chosen.key}
        if not notice.text:
            raise ValueError(f"{notice.purpose} notice without text")
        template = self.templates.answer(notice)
        ends = self.window_ends_at(notice)
        if datetime.now(UTC) + self.window_margin < ends:
            rendered: Rendered = {
                "type": "text",
                "text": {"body": notice.text[:MAX_TEXT], "preview_url": False},
                "window_ends_at": ends.isoformat(),
                "via": f"text/{notice.purpose}",
            }
            if template is not None:
                rendered["fallback"] = {**template.message(), "via": template.key}
            return rendered
        if template is None:
            raise ValueError(
                f"{notice.purpose} answer is outside the 24-hour customer-service window (closed"
                f" {ends.isoformat()}) and the mapping has no approved template for it (answers.{notice.purpose})"
            )
        return {**template.message(), "via": template.key}

    # -- send ------------------------------------------------------------------------------------------
    @staticmethod
    def _message(rendered: Rendered) -> dict[str, object]:
        kind = rendered["type"]
        return {"type": kind, kind: rendered[kind]}

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        try:
            answer = await self.client.send(
                row.to_address, self._message(rendered), biz_opaque_callback_data=row.notice_id
            )
        except WindowClosed:
            fallback = rendered.get("fallback")
            if rendered["type"] != "text" or not fallback:
                raise
            log.info(
                "24-hour window closed before the text answer went out; sending its template",
                extra={"notice_id": row.notice_id, "template": fallback.get("via")},
            )
            answer = await self.client.send(
                row.to_address, self._message(fallback), biz_opaque_callback_data=row.notice_id
            )
        return SendResult(answer.wamid)

    # -- reconcile -------------------------------------------------------------------------------------
    async def reconcile(self, row: DeliveryRow) -> str | Undelivered | None:
        raise CannotReconcile(
            "the WhatsApp Cloud API cannot look up sent messages; check the status webhooks for"
            f" biz_opaque_callback_data={row.notice_id} before replaying"
        )

    async def aclose(self) -> None:
        await self.client.aclose()
