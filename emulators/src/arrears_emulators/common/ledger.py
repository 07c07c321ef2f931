"""The send ledger: every message an emulator accepted, in order.

Tests and chaos runs read it through ``GET /_emulator/ledger`` to count sends per recipient and per notice
(effectively-once checks). An entry is written when the emulator *accepts* a send, including sends whose
response was then deliberately dropped (``dropped=True``), so in-doubt sends are visible.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class LedgerEntry(BaseModel):
    seq: int = Field(description="1-based position in the ledger")
    at: datetime = Field(description="when the emulator accepted the send (UTC)")
    emulator: str
    operation: str = "send"
    provider_id: str = Field(description="the provider's message id (QUO 'AC...', Gmail message id)")
    thread_id: str | None = None
    sender: str | None = None
    recipient: str = Field(description="primary recipient (E.164 number or lower-cased email address)")
    recipients: list[str] = Field(default_factory=list)
    notice_id: str | None = Field(
        None, description="per-notice id when the message carries one (X-Arrears-Notice-Id)"
    )
    content: str | None = Field(None, description="SMS text or email subject")
    dropped: bool = Field(False, description="accepted, but the response was deliberately dropped (in doubt)")
    details: dict[str, Any] = Field(default_factory=dict)


class LedgerView(BaseModel):
    emulator: str
    count: int
    by_recipient: dict[str, int]
    by_notice: dict[str, int]
    entries: list[LedgerEntry]


class Ledger:
    """Append-only list of accepted sends. Used from the emulator's event loop only."""

    def __init__(self, emulator: str) -> None:
        self.emulator = emulator
        self._entries: list[LedgerEntry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        *,
        provider_id: str,
        recipient: str,
        recipients: list[str] | None = None,
        sender: str | None = None,
        thread_id: str | None = None,
        notice_id: str | None = None,
        content: str | None = None,
        dropped: bool = False,
        operation: str = "send",
        details: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        entry = LedgerEntry(
            seq=len(self._entries) + 1,
            at=datetime.now(UTC),
            emulator=self.emulator,
            operation=operation,
            provider_id=provider_id,
            thread_id=thread_id,
            sender=sender,
            recipient=recipient,
            recipients=recipients if recipients is not None else [recipient],
            notice_id=notice_id,
            content=content,
            dropped=dropped,
            details=details or {},
        )
        self._entries.append(entry)
        return entry

    def mark_dropped(self, provider_id: str) -> None:
        for i, entry in enumerate(self._entries):
            if entry.provider_id == provider_id:
                self._entries[i] = entry.model_copy(update={"dropped": True})

    def entries(
        self,
        *,
        recipient: str | None = None,
        notice_id: str | None = None,
        since_seq: int = 0,
    ) -> list[LedgerEntry]:
        out = [e for e in self._entries if e.seq > since_seq]
        if recipient is not None:
            out = [e for e in out if e.recipient == recipient or recipient in e.recipients]
        if notice_id is not None:
            out = [e for e in out if e.notice_id == notice_id]
        return out

    def view(
        self, *, recipient: str | None = None, notice_id: str | None = None, since_seq: int = 0
    ) -> LedgerView:
        entries = self.entries(recipient=recipient, notice_id=notice_id, since_seq=since_seq)
        by_recipient = Counter(e.recipient for e in entries)
        by_notice = Counter(e.notice_id for e in entries if e.notice_id is not None)
        return LedgerView(
            emulator=self.emulator,
            count=len(entries),
            by_recipient=dict(by_recipient),
            by_notice=dict(by_notice),
            entries=entries,
        )

    def clear(self) -> None:
        self._entries.clear()
