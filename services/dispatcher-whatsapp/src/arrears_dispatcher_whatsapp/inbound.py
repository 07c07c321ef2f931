"""The WhatsApp inbound adapter (entry point `arrears.inbound` -> `whatsapp`, see arrears_shared.inbound).

Meta posts every webhook of the app (customer messages and the statuses of what we sent) to one callback URL,
served by the responses service, which mounts this adapter's router at ``/webhooks/whatsapp``:

- a customer's message with words in it (text, a button's label, a list choice, a media caption) becomes an
  `InboundReply` on channel `whatsapp` (provider message id = the wamid, sender ``+<wa_id>``, a Mexican
  ``521…`` id as ``+52…``); reactions, media without a caption and unsupported messages carry nothing to
  classify and are skipped;
- a ``failed`` status becomes a `DeliveryFailure` for the notice named by ``biz_opaque_callback_data``
  (provider message id = the wamid), permanent when the number cannot receive WhatsApp (131026 and friends:
  `webhooks.UNREACHABLE_CODES`); ``sent`` / ``delivered`` / ``read`` change nothing here.

The receiver reads `ARREARS_WHATSAPP_APP_SECRET` (signatures) and `ARREARS_WHATSAPP_VERIFY_TOKEN` (the
subscription handshake). Without an app secret the adapter is unavailable and responses starts without it.
"""

from __future__ import annotations

import logging

from arrears_shared.auth import public
from arrears_shared.inbound import AdapterUnavailable, DeliveryFailure, InboundReply, OnFailure, OnReply
from arrears_shared.settings import ArrearsSettings
from fastapi import APIRouter, Depends
from pydantic import Field, SecretStr

from .channel_spec import CHANNEL
from .webhooks import InboundMessage, StatusUpdate, make_router

log = logging.getLogger(__name__)
ACCESS = "WhatsApp webhooks: HMAC signature (X-Hub-Signature-256) or verify token checked"
NO_WORDS = frozenset({"reaction", "unsupported", "unknown", "system"})


class InboundSettings(ArrearsSettings):
    """Only what the receiver needs (the sending settings stay with the dispatcher)."""

    whatsapp_app_secret: SecretStr = Field(
        SecretStr(""), description="Meta app secret: verifies X-Hub-Signature-256 of incoming webhooks"
    )
    whatsapp_verify_token: SecretStr = Field(
        SecretStr(""), description="Token Meta echoes in the GET hub.challenge handshake of the webhook URL"
    )


def sender_e164(wa_id: str) -> str:
    """The sender's number as we address it. WhatsApp still reports Mexican mobiles with the old mobile
    prefix (``521`` + 10 digits) while the number is ``+52`` + 10 digits (the one we send to)."""
    digits = "".join(c for c in wa_id if c.isdigit())
    if digits.startswith("521") and len(digits) == 13:
        digits = "52" + digits[3:]
    return "+" + digits


def _our_number(message: InboundMessage) -> str | None:
    digits = "".join(c for c in message.display_phone_number or "" if c.isdigit())
    return "+" + digits if digits else None


def as_reply(message: InboundMessage) -> InboundReply | None:
    """The customer's words, or None when the message carries none."""
    body = (message.text or "").strip()
    if not body or message.type in NO_WORDS:
        return None
    return InboundReply(
        channel=CHANNEL.name,
        provider=CHANNEL.provider,
        provider_message_id=message.wamid,
        from_address=sender_e164(message.wa_id),
        body=body,
        received_at=message.timestamp,
        to_address=_our_number(message),
    )


def as_failure(status: StatusUpdate) -> DeliveryFailure | None:
    """A `failed` status as a delivery failure; None for every other status."""
    if not status.failed:
        return None
    codes = status.error_codes
    return DeliveryFailure(
        channel=CHANNEL.name,
        provider=CHANNEL.provider,
        provider_message_id=status.wamid,
        failed_at=status.timestamp,
        reason=f"whatsapp {status.reason or 'failed'}"[:200],
        permanent=status.unreachable,
        notice_id=status.notice_id,
        error_code=str(codes[0]) if codes else None,
    )


def adapter(on_reply: OnReply, on_failure: OnFailure, settings: InboundSettings | None = None) -> APIRouter:
    """``GET`` / ``POST /webhooks/whatsapp``, calling `on_reply` / `on_failure` for what concerns them."""
    s = settings or InboundSettings()
    if not s.whatsapp_app_secret.get_secret_value():
        raise AdapterUnavailable(
            "ARREARS_WHATSAPP_APP_SECRET is not set: WhatsApp webhooks cannot be verified"
        )

    async def on_inbound(message: InboundMessage) -> None:
        reply = as_reply(message)
        if reply is None:
            log.info(
                "WhatsApp message without text skipped", extra={"wamid": message.wamid, "type": message.type}
            )
            return
        await on_reply(reply)

    async def on_status(status: StatusUpdate) -> None:
        failure = as_failure(status)
        if failure is not None:
            await on_failure(failure)

    router = APIRouter()
    router.include_router(
        make_router(on_inbound, on_status, s.whatsapp_app_secret, s.whatsapp_verify_token),
        dependencies=[Depends(public(ACCESS))],
    )
    return router
