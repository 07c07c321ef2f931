"""Twilio as the SMS channel's second route (`arrears_shared.delivery.Route`): used while QUO's circuit is
open, with its own limiter and circuit breaker. A notice is on one route at a time: a notice in doubt at QUO
stays `sending` until QUO is asked (reconciliation), so it never goes by Twilio meanwhile; one in doubt at
Twilio is looked up at Twilio (`reconcile`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arrears_shared.delivery import DeliveryRow, Rendered, SendResult, Undelivered

from .settings import SmsSettings
from .twilio_client import FAILED_STATUSES, PROVIDER, TwilioClient

RECONCILE_WINDOW = timedelta(minutes=5)


class TwilioRoute:
    provider = PROVIDER

    def __init__(self, settings: SmsSettings, client: TwilioClient | None = None) -> None:
        self.from_number = settings.twilio_from_number
        self.status_callback = settings.twilio_status_callback_url
        self.limiter_name = f"twilio:{settings.twilio_from_number}"
        self.rate_per_s = settings.twilio_rate_per_s
        self.burst = settings.twilio_rate_burst
        self.client = client or TwilioClient(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            base_url=settings.twilio_base_url,
            timeout_s=settings.twilio_timeout_s,
        )

    async def send(self, row: DeliveryRow, rendered: Rendered) -> SendResult:
        msg = await self.client.send_message(
            to=row.to_address,
            from_=self.from_number,
            body=rendered["content"],
            status_callback=self.status_callback,
        )
        return SendResult(msg.sid)

    async def reconcile(self, row: DeliveryRow) -> str | Undelivered | None:
        """Our message to this recipient with exactly this body, created around when the send began."""
        if not row.rendered:
            return None
        messages = await self.client.list_messages(
            to=row.to_address, from_=self.from_number, created_after=row.updated_at - RECONCILE_WINDOW
        )
        body = row.rendered["content"]
        for m in messages:
            if (
                m.body == body
                and m.date_created is not None
                and m.date_created <= datetime.now(UTC) + RECONCILE_WINDOW
            ):
                if m.status in FAILED_STATUSES:
                    return Undelivered(m.sid, f"undelivered: Twilio message {m.sid} status {m.status}")
                return m.sid
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
