"""The staff mailbox: the one Gmail sender escalation writes to its own people from (SLA-breach notifications,
scheduled reports), configured by `ARREARS_ESCALATION_NOTIFY_SENDER` and `ARREARS_ESCALATION_NOTIFY_GMAIL_*`.
A user token (`..._GMAIL_TOKEN`) wins; else a service account file with domain-wide delegation acting as the
sender. Customers are never written to from here (they are reached through `notice-due` and the dispatchers)."""

from __future__ import annotations

from arrears_shared.providers.gmail import GmailClient


def staff_gmail(
    sender: str,
    *,
    token: str | None,
    credentials_file: str | None,
    api_endpoint: str | None,
    timeout_s: float = 15.0,
) -> GmailClient:
    if token:
        return GmailClient.from_user_token(token=token, api_endpoint=api_endpoint, timeout_s=timeout_s)
    if not credentials_file:
        raise ValueError(
            "the staff mailbox needs ARREARS_ESCALATION_NOTIFY_GMAIL_TOKEN or "
            "ARREARS_ESCALATION_NOTIFY_GMAIL_CREDENTIALS_FILE"
        )
    return GmailClient.from_service_account_file(
        credentials_file, subject=sender, api_endpoint=api_endpoint, timeout_s=timeout_s
    )
