"""Mailbox model of the Gmail emulator: stored messages, threads, history records and search."""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, Literal, cast

Format = Literal["minimal", "full", "raw", "metadata"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(data: str) -> bytes:
    cleaned = data.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def norm_msgid(value: str) -> str:
    return value.strip().strip("<>").strip()


def _msgids(value: str | None) -> list[str]:
    if not value:
        return []
    return [norm_msgid(v) for v in re.findall(r"<[^>]+>", value)] or [norm_msgid(value)]


class _CachedHeaderRegistry(HeaderRegistry):
    """`HeaderRegistry` builds a new header class (`type(...)`) on every lookup, for every header of every
    message parsed; the classes depend only on the header name, so build each once. (The dispatcher has the
    same class; deliberately not shared: the emulators stand for Google and import nothing of ours, so a bug
    in our MIME code cannot hide on both sides of the wire.)"""

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


# policy.default, with header classes built once (same headers, same values)
_POLICY = policy.default.clone(header_factory=_CachedHeaderRegistry())


def parse_raw(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, message_from_bytes(raw, policy=_POLICY))


def parse_head(raw: bytes) -> EmailMessage:
    """The top-level headers only (the same header values as `parse_raw`, a tenth of the work)."""
    return cast(EmailMessage, BytesParser(policy=_POLICY).parsebytes(raw, headersonly=True))


def addresses(msg: Message, *names: str) -> list[str]:
    values = [str(v) for name in names for v in (msg.get_all(name) or [])]
    return [addr.lower() for _, addr in getaddresses(values) if addr]


def _text_of(msg: Message) -> str:
    chunks: list[str] = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(payload.decode(part.get_content_charset() or "utf-8", errors="replace"))
    return "\n".join(chunks)


def _leaf_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        if isinstance(blocks, list):
            return b"".join(block.as_bytes() for block in blocks if isinstance(block, Message))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _payload(part: Message, part_id: str, header_filter: set[str] | None, with_body: bool) -> dict[str, Any]:
    headers = [
        {"name": name, "value": str(value)}
        for name, value in part.items()
        if header_filter is None or name.lower() in header_filter
    ]
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": headers,
    }
    if not with_body:
        return out
    subparts = part.get_payload() if part.is_multipart() else None
    if isinstance(subparts, list) and part.get_content_type() != "message/delivery-status":
        out["body"] = {"size": 0}
        out["parts"] = [
            _payload(p, str(i) if part_id == "" else f"{part_id}.{i}", None, True)
            for i, p in enumerate(subparts)
        ]
    else:
        data = _leaf_bytes(part)
        out["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
    return out


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    label_ids: list[str]
    history_id: int
    internal_date_ms: int
    raw: bytes
    head: EmailMessage  # top-level headers (`parse_head`); the whole MIME tree is parsed when first needed
    _parsed: EmailMessage | None = field(default=None, repr=False)
    _headers: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def parsed(self) -> EmailMessage:
        if self._parsed is None:
            self._parsed = parse_raw(self.raw)
        return self._parsed

    def header(self, name: str) -> str | None:
        key = name.lower()
        if key not in self._headers:
            value = self.head.get(name)
            self._headers[key] = None if value is None else str(value)
        return self._headers[key]

    @property
    def message_id(self) -> str:
        return norm_msgid(self.header("Message-ID") or "")

    @property
    def snippet(self) -> str:
        return " ".join(_text_of(self.parsed).split())[:200]

    def ref(self) -> dict[str, str]:
        return {"id": self.id, "threadId": self.thread_id}

    def resource(self, fmt: Format = "full", metadata_headers: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": list(self.label_ids),
            "snippet": self.snippet,
            "sizeEstimate": len(self.raw),
            "historyId": str(self.history_id),
            "internalDate": str(self.internal_date_ms),
        }
        if fmt == "raw":
            out["raw"] = b64url(self.raw)
        elif fmt == "metadata":
            wanted = {h.lower() for h in metadata_headers} if metadata_headers else None
            out["payload"] = _payload(self.parsed, "", wanted, with_body=False)
        elif fmt == "full":
            out["payload"] = _payload(self.parsed, "", None, with_body=True)
        return out


@dataclass
class HistoryRecord:
    id: int
    at: float
    message: StoredMessage

    def resource(self) -> dict[str, Any]:
        added = {"message": {**self.message.ref(), "labelIds": list(self.message.label_ids)}}
        return {"id": str(self.id), "messages": [self.message.ref()], "messagesAdded": [added]}


def _new_id(taken: dict[str, StoredMessage]) -> str:
    while True:
        candidate = f"{secrets.randbits(63) | (1 << 60):x}"
        if candidate not in taken:
            return candidate


@dataclass
class Mailbox:
    email: str
    history_id: int
    history_floor: int = 0
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    history: list[HistoryRecord] = field(default_factory=list)
    by_rfc822_id: dict[str, str] = field(default_factory=dict)
    # every message per Message-ID (a duplicate send shows as two) and the thread ids, so that the lookups a
    # dispatcher makes per send stay O(1) however full the mailbox gets
    all_by_rfc822_id: dict[str, list[str]] = field(default_factory=dict)
    thread_ids: set[str] = field(default_factory=set)
    send_times: list[float] = field(default_factory=list)  # epoch seconds of sends, oldest first
    watch_expiration_ms: int | None = None

    def __post_init__(self) -> None:
        self.history_floor = self.history_id

    # ---- storing -------------------------------------------------------------------------------------
    def _thread_for(self, parsed: Message, thread_id_hint: str | None) -> str | None:
        if thread_id_hint and thread_id_hint in self.thread_ids:
            return thread_id_hint
        refs = _msgids(str(parsed.get("References") or "")) + _msgids(str(parsed.get("In-Reply-To") or ""))
        for ref in reversed(refs):
            found = self.by_rfc822_id.get(ref)
            if found is not None:
                return self.messages[found].thread_id
        return None

    def add(
        self,
        raw: bytes,
        labels: list[str],
        *,
        thread_id_hint: str | None = None,
        head: EmailMessage | None = None,
    ) -> StoredMessage:
        """Store a message; `head` is `parse_head(raw)` when the caller already has it."""
        if head is None:
            head = parse_head(raw)
        if head.get("Message-ID") is None:
            raw = f"Message-ID: {make_msgid(domain='mail.gmail.com')}\r\n".encode() + raw
            head = parse_head(raw)
        if head.get("Date") is None:
            raw = f"Date: {formatdate(localtime=False, usegmt=True)}\r\n".encode() + raw
            head = parse_head(raw)
        message_id = _new_id(self.messages)
        self.history_id += 1
        stored = StoredMessage(
            id=message_id,
            thread_id=self._thread_for(head, thread_id_hint) or message_id,
            label_ids=labels,
            history_id=self.history_id,
            internal_date_ms=int(time.time() * 1000),
            raw=raw,
            head=head,
        )
        self.messages[message_id] = stored
        self.order.append(message_id)
        self.thread_ids.add(stored.thread_id)
        if stored.message_id:
            self.by_rfc822_id.setdefault(stored.message_id, message_id)
            self.all_by_rfc822_id.setdefault(stored.message_id, []).append(message_id)
        self.history.append(HistoryRecord(id=self.history_id, at=time.time(), message=stored))
        return stored

    # ---- history -------------------------------------------------------------------------------------
    def expire_history(self, *, up_to: int | None = None, older_than_s: float | None = None) -> None:
        """Drop history records; a later ``startHistoryId`` below the new floor answers 404."""
        keep: list[HistoryRecord] = []
        cutoff = time.time() - older_than_s if older_than_s is not None else None
        limit = self.history_id if up_to is None and cutoff is None else up_to
        for record in self.history:
            expired = (limit is not None and record.id <= limit) or (
                cutoff is not None and record.at < cutoff
            )
            if expired:
                self.history_floor = max(self.history_floor, record.id)
            else:
                keep.append(record)
        if limit is not None:
            self.history_floor = max(self.history_floor, min(limit, self.history_id))
        self.history = keep

    def history_since(self, start: int, label_id: str | None) -> list[HistoryRecord]:
        return [
            r for r in self.history if r.id > start and (label_id is None or label_id in r.message.label_ids)
        ]

    # ---- search --------------------------------------------------------------------------------------
    def search(self, query: str | None, label_ids: list[str] | None) -> list[StoredMessage]:
        matcher = Query(query or "")
        only = _only_msgid(query)
        candidates = (
            reversed(self.order)  # newest first, like Gmail
            if only is None
            else [i for i in reversed(self.all_by_rfc822_id.get(only, [])) if i in self.messages]
        )
        out = []
        for message_id in candidates:
            message = self.messages[message_id]
            if label_ids and not all(label in message.label_ids for label in label_ids):
                continue
            if matcher.matches(message):
                out.append(message)
        return out

    # Gmail counts the sending limit over a rolling 24 hours, not per calendar day.
    def count_send(self, now: float) -> None:
        self.send_times.append(now)

    def sends_in_window(self, now: float, window_s: float = 86400.0) -> int:
        cutoff = now - window_s
        drop = 0
        while drop < len(self.send_times) and self.send_times[drop] <= cutoff:
            drop += 1
        if drop:
            del self.send_times[:drop]
        return len(self.send_times)

    def window_frees_at(self, window_s: float = 86400.0) -> float:
        """When the oldest send in the window leaves it."""
        return (self.send_times[0] if self.send_times else time.time()) + window_s


def _only_msgid(query: str | None) -> str | None:
    """The Message-ID of a query that is exactly one ``rfc822msgid:`` term (served from the index)."""
    terms = list(_TOKEN.finditer(query or ""))
    if len(terms) != 1 or terms[0].group("neg") or (terms[0].group("op") or "").lower() != "rfc822msgid":
        return None
    return norm_msgid(terms[0].group("quoted") or terms[0].group("bare") or "")


_TOKEN = re.compile(r'(?P<neg>-)?(?:(?P<op>[A-Za-z][\w-]*):)?(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))')
_LABEL_ALIASES = {
    "sent": "SENT",
    "inbox": "INBOX",
    "unread": "UNREAD",
    "starred": "STARRED",
    "draft": "DRAFT",
}


def _parse_date(value: str) -> datetime | None:
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _relative(value: str) -> timedelta | None:
    m = re.fullmatch(r"(\d+)([dmy])", value)
    if not m:
        return None
    days = {"d": 1, "m": 30, "y": 365}[m.group(2)] * int(m.group(1))
    return timedelta(days=days)


class Query:
    """A subset of Gmail's search syntax, ANDed terms with optional ``-`` negation:

    ``rfc822msgid:``, ``from:``, ``to:``, ``cc:``, ``bcc:``, ``subject:``, ``in:``, ``label:``, ``is:``,
    ``after:``/``before:`` (``YYYY/MM/DD`` or epoch seconds), ``newer_than:``/``older_than:`` (``Nd|m|y``),
    free text (quoted or bare, matched against headers and text bodies), and — an emulator extension,
    real Gmail does not index custom headers — ``X-Some-Header:value`` for any header name containing ``-``.
    """

    def __init__(self, query: str) -> None:
        self.terms: list[tuple[bool, str | None, str]] = []
        for m in _TOKEN.finditer(query):
            value = m.group("quoted") if m.group("quoted") is not None else m.group("bare")
            op = m.group("op")
            if op is None and value.upper() in ("AND", "OR"):
                continue
            self.terms.append((bool(m.group("neg")), op.lower() if op else None, value))

    def matches(self, message: StoredMessage) -> bool:
        return all(self._term(message, op, value) != neg for neg, op, value in self.terms)

    def _term(self, message: StoredMessage, op: str | None, value: str) -> bool:
        parsed = message.head  # the terms below read top-level headers only
        needle = value.lower()
        match op:
            case None:
                return self._free_text(message, needle)
            case "rfc822msgid":
                return message.message_id == norm_msgid(value)
            case "from":
                return needle in str(parsed.get("From") or "").lower()
            case "to":
                return any(needle in a for a in addresses(parsed, "To", "Cc", "Bcc", "Delivered-To"))
            case "cc" | "bcc":
                return any(needle in a for a in addresses(parsed, op))
            case "subject":
                return needle in str(parsed.get("Subject") or "").lower()
            case "in" | "label" | "is":
                if needle == "anywhere":
                    return True
                if op == "is" and needle == "read":
                    return "UNREAD" not in message.label_ids
                label = _LABEL_ALIASES.get(needle, value.upper())
                return label in message.label_ids or value in message.label_ids
            case "after" | "before" | "newer" | "older":
                when = _parse_date(value)
                if when is None:
                    return False
                sent_at = datetime.fromtimestamp(message.internal_date_ms / 1000, UTC)
                return sent_at >= when if op in ("after", "newer") else sent_at < when
            case "newer_than" | "older_than":
                delta = _relative(value)
                if delta is None:
                    return False
                sent_at = datetime.fromtimestamp(message.internal_date_ms / 1000, UTC)
                threshold = datetime.now(UTC) - delta
                return sent_at >= threshold if op == "newer_than" else sent_at < threshold
            case _ if "-" in op:
                return any(str(v).strip().lower() == needle for v in parsed.get_all(op) or [])
            case _:
                return self._free_text(message, f"{op}:{needle}")

    @staticmethod
    def _free_text(message: StoredMessage, needle: str) -> bool:
        if any(needle in str(v).lower() for _, v in message.parsed.items()):
            return True
        return needle in _text_of(message.parsed).lower()
