"""The QUO-specific part of SMS delivery: render, send, reconcile.

Reconciliation looks our message up with ``GET /messages?phoneNumberId=<PN id>``: the id of our number is
taken from ``ARREARS_QUO_PHONE_NUMBER_ID`` or resolved once from ``GET /phone-numbers`` (at start-up, or at
the first lookup if QUO was unreachable then). A message found with status ``undelivered``/``failed`` was
accepted by QUO and then refused by the carrier: the delivery is settled as failed, never resent.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from arrears_shared.delivery import DeliveryRow, Rendered, SendResult, ThreadRef, Undelivered
from arrears_shared.delivery.routes import FALLBACK
from arrears_shared.events import NoticeDue
from arrears_shared.providers.errors import ProviderError

from .quo_client import FAILED_STATUSES, QuoClient
from .settings import SmsSettings
from .templates_sms import SmsTemplates
from .twilio_route import TwilioRoute

RECONCILE_WINDOW = timedelta(minutes=5)
log = logging.getLogger(__name__)


class SmsChannel:
    channel = "sms"
    provider = "quo"

    def __init__(self, settings: SmsSettings, client: QuoClient | None = None) -> None:
        self.settings = settings
        self.from_number = settings.quo_from_number
        self.phone_number_id: str | None = settings.quo_phone_number_id or (
            settings.quo_from_number if settings.quo_from_number.startswith("PN") else None
        )
        self._resolving = asyncio.Lock()
        self.limiter_name = f"quo:{settings.quo_from_number or 'default'}"
        self.rate_per_s = settings.quo_rate_per_s
        self.burst = settings.quo_rate_burst
        self.templates = SmsTemplates(
            settings.brand_name,
            footer=settings.sms_opt_out_footer,
            max_segments=settings.sms_max_segments,
            override_dir=settings.sms_templates_dir,
            default_locale=settings.sms_default_locale,
        )
        self.client = client or QuoClient(
            api_key=settings.quo_api_key.get_secret_value(),
            base_url=settings.quo_base_url,
            timeout_s=settings.quo_timeout_s,
            max_connections=settings.quo_max_connections,
            api_version=settings.quo_api_version,
        )

        # the second provider, used while QUO's circuit is open (arrears_shared.delivery.routes)
        self.fallback: TwilioRoute | None = TwilioRoute(settings) if settings.twilio_configured else None

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered:
        text, segments = self.templates.render_counted(notice)
        return {"content": text, "segments": segments.count, "encoding": segments.encoding}

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        msg = await self.client.send_message(
            content=rendered["content"], from_=self.from_number, to=row.to_address
        )
        return SendResult(msg.id)

    async def start(self) -> None:
        """At start-up: resolve our number's PN id once (a failure is retried at the first lookup)."""
        try:
            await self.resolve_phone_number_id()
        except ProviderError as e:
            log.warning("cannot resolve the QUO phone-number id yet", extra={"error": str(e)[:200]})

    async def resolve_phone_number_id(self) -> str:
        if self.phone_number_id is None:
            async with self._resolving:
                if self.phone_number_id is None:
                    self.phone_number_id = await self.client.resolve_phone_number_id(self.from_number)
                    log.info("QUO phone-number id resolved", extra={"phone_number_id": self.phone_number_id})
        return self.phone_number_id

    async def reconcile(self, row: DeliveryRow) -> str | Undelivered | None:
        """Our message to this recipient with exactly this content, created around when the send began.
        Found but not delivered by the carrier -> `Undelivered` (settled failed, not resent)."""
        if not row.rendered:
            return None
        if row.route == FALLBACK and self.fallback is not None:
            return await self.fallback.reconcile(row)
        messages = await self.client.list_messages(
            phone_number_id=await self.resolve_phone_number_id(),
            participant=row.to_address,
            created_after=row.updated_at - RECONCILE_WINDOW,
            created_before=datetime.now(UTC) + timedelta(minutes=1),
        )
        content = row.rendered["content"]
        for m in messages:
            if m.direction == "outgoing" and m.text == content and row.to_address in m.to:
                if m.status in FAILED_STATUSES:
                    return Undelivered(m.id, f"undelivered: QUO message {m.id} status {m.status}")
                return m.id
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()
