"""The QUO-specific part of SMS delivery: render, send, reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arrears_shared.delivery import DeliveryRow, Rendered, SendResult, ThreadRef
from arrears_shared.events import NoticeDue

from .quo_client import QuoClient
from .settings import SmsSettings
from .templates_sms import SmsTemplates

RECONCILE_WINDOW = timedelta(minutes=5)


class SmsChannel:
    channel = "sms"
    provider = "quo"

    def __init__(self, settings: SmsSettings, client: QuoClient | None = None) -> None:
        self.settings = settings
        self.from_number = settings.quo_from_number
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
        )

    def render(self, notice: NoticeDue, thread: ThreadRef | None = None) -> Rendered:
        text, segments = self.templates.render_counted(notice)
        return {"content": text, "segments": segments.count, "encoding": segments.encoding}

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        msg = await self.client.send_message(
            content=rendered["content"], from_=self.from_number, to=row.to_address
        )
        return SendResult(msg.id)

    async def reconcile(self, row: DeliveryRow) -> str | None:
        """Our message to this recipient with exactly this content, created around when the send began."""
        if not row.rendered:
            return None
        messages = await self.client.list_messages(
            phone_number_id_or_from=self.from_number,
            participant=row.to_address,
            created_after=row.updated_at - RECONCILE_WINDOW,
            created_before=datetime.now(UTC) + timedelta(minutes=1),
        )
        content = row.rendered["content"]
        for m in messages:
            if m.direction == "outgoing" and m.text == content and row.to_address in m.to:
                return m.id
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
