"""The mailboxes replies are read from: every mailbox of the sending pool (`ARREARS_GMAIL_MAILBOXES`, disabled
ones too: a draining mailbox still receives answers to what it sent), else the one `ARREARS_GMAIL_SENDER`.
Each has its own client (its own credentials, or the service's acting as it), its own history cursor and its
own watch (both keyed by the mailbox address)."""

from __future__ import annotations

from dataclasses import dataclass

from arrears_shared.providers.gmail import GmailClient, mailbox_client

from ..settings import ResponsesSettings


@dataclass(frozen=True, slots=True)
class ReadMailbox:
    address: str  # the cursor / watch key: the mailbox address ("me" for an unnamed single mailbox)
    client: GmailClient


def make_client(s: ResponsesSettings) -> GmailClient:
    common = {"api_endpoint": s.gmail_api_endpoint, "timeout_s": s.gmail_timeout_s}
    if s.gmail_token is not None:
        return GmailClient.from_user_token(token=s.gmail_token.get_secret_value(), **common)  # type: ignore[arg-type]
    if s.gmail_credentials_file:
        return GmailClient.from_service_account_file(
            s.gmail_credentials_file,
            subject=s.gmail_sender,
            **common,  # type: ignore[arg-type]
        )
    raise ValueError("Gmail polling needs ARREARS_GMAIL_TOKEN or ARREARS_GMAIL_CREDENTIALS_FILE")


def own_addresses(s: ResponsesSettings) -> frozenset[str]:
    """Our own sending addresses: mail from them is ours, never a customer's reply."""
    found = {m.address for m in s.gmail_mailboxes}
    if s.gmail_sender.strip():
        found.add(s.gmail_sender.strip().lower())
    return frozenset(found)


def reading_mailboxes(s: ResponsesSettings) -> list[ReadMailbox]:
    if not s.gmail_mailboxes:
        return [ReadMailbox(s.gmail_sender or "me", make_client(s))]
    return [
        ReadMailbox(
            m.address,
            mailbox_client(
                m,
                api_endpoint=s.gmail_api_endpoint,
                timeout_s=s.gmail_timeout_s,
                default_token=s.gmail_token,
                default_credentials_file=s.gmail_credentials_file,
            ),
        )
        for m in s.gmail_mailboxes
    ]


def close_all(boxes: list[ReadMailbox]) -> None:
    for box in boxes:
        box.client.close()
