"""The text a customer was actually sent, for `message-sent.text` (a personal field: sealed on the topic and
at rest) and so for the account timeline.

A channel may say it itself (`Channel.sent_text(rendered) -> str | None`, optional); otherwise it is read from
the rendered message's shape, whatever the channel: `content` (an SMS), `raw` (an RFC 2822 message: its
subject and text part), `text.body` (a WhatsApp text), `template` (a WhatsApp template: its name and
parameters). Bounded to `MAX_BYTES` of UTF-8 (an email's text part can be long), cut with `CUT_MARK`."""

from __future__ import annotations

import base64
import binascii
import email
from email import policy
from email.message import EmailMessage
from typing import Any

from .channel import Rendered

MAX_BYTES = 4096
CUT_MARK = " […cut]"


def sent_text(channel: Any, rendered: Rendered | None) -> str | None:
    """The bounded text of `rendered` as sent on `channel` (None when there is none to tell)."""
    if not rendered:
        return None
    own = getattr(channel, "sent_text", None)
    found = own(rendered) if callable(own) else text_of(rendered)
    return bounded(found) if found else None


def text_of(rendered: Rendered) -> str | None:
    if isinstance(rendered.get("content"), str):
        return str(rendered["content"])
    if isinstance(rendered.get("raw"), str):
        return _mime_text(rendered["raw"])
    body = rendered.get("text")
    if isinstance(body, dict) and isinstance(body.get("body"), str):
        return str(body["body"])
    template = rendered.get("template")
    if isinstance(template, dict):
        params = [p for p in _strings(template.get("components", [])) if p]
        return f"[template {template.get('name', '?')}] " + " | ".join(params)
    return None


def bounded(value: str, max_bytes: int = MAX_BYTES) -> str:
    raw = value.encode("utf-8")
    if len(raw) <= max_bytes:
        return value
    keep = max_bytes - len(CUT_MARK.encode("utf-8"))
    return raw[:keep].decode("utf-8", errors="ignore") + CUT_MARK


def _mime_text(raw_b64: str) -> str | None:
    try:
        raw = base64.b64decode(raw_b64)
    except (binascii.Error, ValueError):
        return None
    msg = email.message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage):
        return None
    part = msg.get_body(preferencelist=("plain",))
    body = part.get_content().replace("\r\n", "\n").strip() if part is not None else ""
    subject = str(msg.get("Subject", "") or "")
    return (f"Subject: {subject}\n\n" if subject else "") + body


def _strings(node: Any) -> list[str]:
    """The `text` values of a template's components (their parameters), in order."""
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    if isinstance(node, dict):
        own = [str(node["text"])] if isinstance(node.get("text"), str) else []
        return own + [s for k, v in node.items() if k != "text" for s in _strings(v)]
    return []
