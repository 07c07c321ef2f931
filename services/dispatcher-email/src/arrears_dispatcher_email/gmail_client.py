"""The Gmail API client lives once, in `arrears_shared.providers.gmail` (the responses service reads the
mailbox with it too); this module keeps the dispatcher's import path."""

from arrears_shared.providers.gmail import (
    GMAIL_READONLY_SCOPE,
    GMAIL_SEND_SCOPE,
    GmailClient,
    GmailMessage,
    GmailSent,
    HistoryExpired,
    classify_exception,
    classify_http_error,
)

__all__ = [
    "GMAIL_READONLY_SCOPE",
    "GMAIL_SEND_SCOPE",
    "GmailClient",
    "GmailMessage",
    "GmailSent",
    "HistoryExpired",
    "classify_exception",
    "classify_http_error",
]
