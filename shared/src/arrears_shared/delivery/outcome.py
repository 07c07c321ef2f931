"""The outcome of a delivery as an event: `message-sent` (sent, failed, suppressed) in the transaction that
settles the row. A permanent failure is only reported: the segmenter, which owns the channel order, sends
the step on the next channel (arrears_segmenter.timers.firing.fall_back)."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import telemetry as m
from ..events import DeliveryStatus, MessageSent
from ..stream.transaction import Transaction
from .binding import Binding
from .channel import Channel, DeliveryRow
from .routes import Routes
from .sent_text import sent_text


class Outcomes:
    def __init__(self, bound: Binding, channel: Channel, routes: Routes) -> None:
        self.bound = bound
        self.channel = channel
        self.routes = routes

    def emit(
        self,
        tx: Transaction,
        row: DeliveryRow,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        permanent: bool = False,
        provider_message_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        n = row.notice
        service = self.bound.service
        tx.emit(
            MessageSent(
                account_id=row.account_id,
                notice_id=row.notice_id,
                channel=n.channel,
                status=status,
                provider=self.routes.provider(row.route),
                provider_message_id=provider_message_id,
                thread_id=thread_id,
                to=row.to_address,
                tier=n.tier,
                step=n.step,
                campaign_id=n.campaign_id,
                reason=reason,
                permanent=permanent,
                attempts=row.attempts,
                sent_at=datetime.now(UTC),
                timezone=n.timezone,
                currency=n.currency,
                purpose=n.purpose,
                # what the customer read (sealed on the topic): the timeline shows it to who may see it
                text=sent_text(self.channel, row.rendered) if status is DeliveryStatus.SENT else None,
            ),
            id=f"{service}:{row.notice_id}:{status.value}:{row.attempts}",
        )
        m.MESSAGES_SENT.labels(service, self.channel.channel, status.value).inc()
