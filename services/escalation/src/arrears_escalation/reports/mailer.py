"""Sending a report to its distribution list: one e-mail (every recipient in To), the XLSX and PDF attached,
through the real Gmail API client (`arrears_shared.providers.gmail`) from the configured mailbox.

`send_report_mail` is the one function the delivery calls: staff e-mail has no platform-wide channel yet, and
switching to one (e.g. a staff notification purpose on the e-mail path) changes only this module. Its
Message-ID is deterministic per report, so a send left in doubt is reconciled by searching the mailbox for it
(`find_report_mail`) before anything is sent again. No customer personal data is in a report."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formatdate

from arrears_shared.providers.gmail import GmailClient

from ..staff_mail import staff_gmail
from .models import ReportsConfig

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def message_id_for(report_id: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "arrears.invalid"
    return f"<report.{report_id}@{domain}>"


def build(
    cfg: ReportsConfig, report_id: str, title: str, period: str, xlsx: bytes, pdf: bytes, flags: list[str]
) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = f"{title}, {period}"
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id_for(report_id, cfg.sender)
    msg["X-Arrears-Report"] = report_id
    lines = [f"{title}, {period}.", ""]
    lines += ["Red flags:", *(f"- {f}" for f in flags)] if flags else ["Every KPI met its target."]
    if cfg.console_url:
        lines += ["", f"In the console: {cfg.console_url.rstrip('/')}/reports/{report_id}"]
    lines += ["", "The figures are attached as XLSX and PDF."]
    msg.set_content("\n".join(lines))
    msg.add_attachment(
        xlsx, maintype=XLSX.split("/")[0], subtype=XLSX.split("/")[1], filename=f"{report_id}.xlsx"
    )
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{report_id}.pdf")
    return msg.as_bytes()


def client(cfg: ReportsConfig) -> GmailClient:
    return staff_gmail(
        cfg.sender,
        token=cfg.gmail_token,
        credentials_file=cfg.gmail_credentials_file,
        api_endpoint=cfg.gmail_api_endpoint,
    )


async def send_report_mail(cfg: ReportsConfig, raw: bytes) -> str:
    """Send one report e-mail; returns the provider's message id. Raises the classified provider errors."""
    gmail = client(cfg)
    try:
        return (await gmail.send_raw(raw)).id
    finally:
        await asyncio.to_thread(gmail.close)


async def find_report_mail(cfg: ReportsConfig, report_id: str) -> str | None:
    """The provider id of this report's e-mail if the mailbox has it (a send left in doubt), else None."""
    gmail = client(cfg)
    try:
        found = await gmail.find_by_message_id(message_id_for(report_id, cfg.sender))
    finally:
        await asyncio.to_thread(gmail.close)
    return found[0] if found else None
