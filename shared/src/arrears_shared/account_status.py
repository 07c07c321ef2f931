"""`AccountStatus`, on its own: the ingest validation workers need it without importing pydantic and the event
models (re-exported by `arrears_shared.events`, where it belongs)."""

from __future__ import annotations

from enum import StrEnum


class AccountStatus(StrEnum):
    OPEN = "open"
    PROMISE = "promise"
    DISPUTE = "dispute"
    PAID = "paid"
    CLOSED = "closed"
