"""RFC 5322 message for one notice, built with the standard `email` package.

Injection-proof headers: every value taken from data is collapsed to one line (CR/LF and other control
characters become spaces) before it is set, addresses are validated, and the `email` policy itself refuses
any header value that still contains a line break. The Message-ID is derived from the notice id and the
notice id travels in `X-Arrears-Notice-Id`, so an in-doubt send can be found again at the provider.
An automatic answer (no HTML part) carries `Auto-Submitted: auto-replied` (RFC 3834), so that the customer's
own auto-responder does not answer it back.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email import policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from arrears_shared.delivery.render import one_line

NOTICE_HEADER = "X-Arrears-Notice-Id"
_ADDR = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[A-Za-z0-9.-]{1,250}>$")
_TOKEN = re.compile(r"^[\x21-\x7e]{1,200}$")


class _CachedHeaderRegistry(HeaderRegistry):
    """`HeaderRegistry` builds a new header class (`type(...)`) each time a header is set; the class depends
    only on the header name, so build each once (same headers, same bytes, a fraction of the CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        cls = self._classes.get(name)
        if cls is None:
            cls = super().__getitem__(name)
            if len(self._classes) < 1000:
                self._classes[name] = cls
        return cls


_POLICY = policy.SMTP.clone(header_factory=_CachedHeaderRegistry())


def valid_address(addr: str) -> str:
    if not _ADDR.match(addr):
        raise ValueError("recipient is not a valid email address")
    return addr


def message_id_for(notice_id: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "arrears.invalid"
    return f"<{hashlib.sha256(notice_id.encode()).hexdigest()[:40]}.notice@{domain}>"


def unsubscribe_url(template: str, notice_id: str) -> str:
    return template.replace("{notice_id}", quote(notice_id, safe=""))


def build_message(
    *,
    notice_id: str,
    to: str,
    to_name: str,
    sender: str,
    sender_name: str,
    subject: str,
    text_body: str,
    html_body: str | None,
    unsubscribe: str,
    date: datetime,
    references: list[str] | None = None,
    auto_submitted: str | None = None,
) -> bytes:
    """The notice as multipart/alternative (text + HTML), or text/plain alone when `html_body` is None.
    `references`: Message-IDs of the earlier messages of the conversation, oldest first; the last one is
    `In-Reply-To` (per-account threading). `auto_submitted`: the RFC 3834 `Auto-Submitted` value."""
    if not _TOKEN.match(notice_id):
        raise ValueError("notice id is not a printable header token")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = Address(display_name=one_line(sender_name), addr_spec=valid_address(sender))
    msg["To"] = Address(display_name=one_line(to_name), addr_spec=valid_address(to))
    msg["Subject"] = one_line(subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id_for(notice_id, sender)
    msg[NOTICE_HEADER] = notice_id
    if references:
        ids = [r for r in references if _MSGID.match(r)]
        if ids:
            msg["In-Reply-To"] = ids[-1]
            msg["References"] = " ".join(ids)
    msg["List-Unsubscribe"] = f"<{one_line(unsubscribe)}>, <mailto:{sender}?subject=unsubscribe>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if auto_submitted:
        msg["Auto-Submitted"] = one_line(auto_submitted)
    msg.set_content(text_body)
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html")
    return msg.as_bytes()
