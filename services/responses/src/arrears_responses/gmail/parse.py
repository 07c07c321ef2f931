"""What an inbound email is: a customer's reply, an automatic reply (out-of-office) or a bounce (DSN).

Parsed from the raw RFC 2822 bytes (`users.messages.get?format=raw`) with the standard library's `email`
package. Recognised:
- **bounces** (RFC 3464 DSN): `multipart/report; report-type=delivery-status`, or a message from
  mailer-daemon / postmaster; the failed recipient, status code and original Message-ID are extracted;
- **automatic replies**: `Auto-Submitted` other than `no` (RFC 3834), `X-Autoreply` / `X-Autorespond`,
  `Precedence: auto_reply|bulk|junk`, or an out-of-office subject in common languages;
- everything else is a reply; its text is the new part only (quoted history and signatures removed). A reply
  that came through a mailing list (`Precedence: list`, a `List-Id`) is flagged `mailing_list`: no automatic
  answer goes to it (RFC 3834 section 2, mail loops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from enum import StrEnum

NOTICE_MSGID = re.compile(r"<([0-9a-f]{40})\.notice@[^>]+>", re.I)
_MSGID = re.compile(r"<[^<>\s]+>")
_OOO_SUBJECT = re.compile(
    r"^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|auto:|"
    r"respuesta autom[aá]tica|fuera de la oficina|r[ée]ponse automatique|absence|abwesenheit|"
    r"i am (?:currently )?out of|i'?m (?:currently )?out of|on vacation|away from)",
    re.I,
)
_BOUNCE_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon)@", re.I)
_STATUS = re.compile(r"^\s*Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.I | re.M)
_FINAL_RCPT = re.compile(r"^\s*(?:Final|Original)-Recipient:\s*rfc822;\s*(\S+)", re.I | re.M)
_QUOTE_START = re.compile(
    r"^(?:on .{3,200} wrote:|el .{3,200} escribi[oó]:|le .{3,200} a [ée]crit|-{2,} ?original message ?-{2,}|"
    r"from: .+|_{5,}|sent from my \w+)\s*$",
    re.I,
)


class EmailKind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass
class InboundEmail:
    kind: EmailKind
    from_address: str
    to_addresses: list[str]
    subject: str
    message_id: str | None
    references: list[str] = field(default_factory=list)  # In-Reply-To + References Message-IDs
    text: str = ""
    bounce_status: str | None = None
    bounce_recipient: str | None = None
    mailing_list: bool = False  # came through a list: never answered automatically (RFC 3834)

    @property
    def notice_hashes(self) -> list[str]:
        """Our notices' Message-ID hashes this email refers to, nearest first."""
        found: list[str] = []
        for ref in reversed(self.references):
            if m := NOTICE_MSGID.fullmatch(ref.strip()):
                found.append(m.group(1).lower())
        return found

    @property
    def hard_bounce(self) -> bool:
        return self.kind is EmailKind.BOUNCE and (self.bounce_status or "5").startswith("5")


def _text_of(msg: Message) -> str:
    if isinstance(msg, EmailMessage):
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is not None:
            content = part.get_content()
            if part.get_content_type() == "text/html":
                content = re.sub(r"<[^>]+>", " ", content)
            return str(content)
    return ""


def strip_quoted(text: str) -> str:
    """The new text of a reply: stop at the first quote header, drop `>` lines."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _QUOTE_START.match(line.strip()):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return " ".join(" ".join(kept).split())


def _is_auto(msg: Message, subject: str) -> bool:
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Autoresponder"):
        return True
    if (msg.get("Precedence") or "").strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_OOO_SUBJECT.match(subject))


def _from_list(msg: Message) -> bool:
    return (msg.get("Precedence") or "").strip().lower() == "list" or msg.get("List-Id") is not None


def _bounce_details(msg: Message) -> tuple[str | None, str | None, list[str]]:
    status = recipient = None
    original: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            payload = part.get_payload()
            blob = "\n".join(str(p) for p in (payload if isinstance(payload, list) else [payload]))
            status = (m := _STATUS.search(blob)) and m.group(1) or status
            recipient = (m := _FINAL_RCPT.search(blob)) and m.group(1) or recipient
        elif ctype in ("text/rfc822-headers", "message/rfc822"):
            raw = part.get_payload(decode=True) if ctype == "text/rfc822-headers" else None
            blob = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            m = re.search(r"^Message-ID:\s*(<[^>]+>)", blob, re.I | re.M)
            if m:
                original.append(m.group(1))
    if recipient is None and (failed := msg.get("X-Failed-Recipients")):
        recipient = str(failed).split(",")[0].strip()
    return status, recipient.lower() if recipient else None, original


def parse_email(raw: bytes) -> InboundEmail:
    msg = message_from_bytes(raw, policy=policy.default)
    subject = str(msg.get("Subject") or "")
    from_address = parseaddr(str(msg.get("From") or ""))[1].strip().lower()
    to = [a.strip().lower() for _, a in getaddresses([str(v) for v in msg.get_all("To", [])]) if a]
    refs = _MSGID.findall(f"{msg.get('References') or ''} {msg.get('In-Reply-To') or ''}")
    message_id = str(msg.get("Message-ID") or "").strip() or None
    report = msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type") or "").lower() == "delivery-status"
    )
    if report or _BOUNCE_SENDER.match(from_address):
        status, recipient, original = _bounce_details(msg)
        return InboundEmail(
            kind=EmailKind.BOUNCE,
            from_address=from_address,
            to_addresses=to,
            subject=subject,
            message_id=message_id,
            references=refs + original,
            text=strip_quoted(_text_of(msg))[:5000],
            bounce_status=status,
            bounce_recipient=recipient,
        )
    kind = EmailKind.AUTO_REPLY if _is_auto(msg, subject) else EmailKind.REPLY
    return InboundEmail(
        kind=kind,
        from_address=from_address,
        to_addresses=to,
        subject=subject,
        message_id=message_id,
        references=refs,
        text=strip_quoted(_text_of(msg))[:5000],
        mailing_list=_from_list(msg),
    )
