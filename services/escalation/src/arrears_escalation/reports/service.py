"""Reports: generated once per (kind, period) — the row's key, under an advisory lock so that of several
replicas one builds it and the others skip — stored as figures, listed, and e-mailed to the distribution list
exactly once: the row goes to `sending` (committed) before the provider call and to `sent` after it; a row
found in `sending` later is in doubt and is reconciled with the mailbox (its deterministic Message-ID)
before it is ever sent again."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.providers.errors import ProviderError, ProviderInDoubt, ProviderPermanentError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import metrics
from ..cases.models import SCHEMA
from ..collection.targets import KpiTarget
from . import mailer, render
from .figures import build
from .models import KINDS, TITLES, ReportDetail, ReportsConfig, ReportView, last_period, report_id

log = logging.getLogger(__name__)
LOCK = 0x52455054  # "REPT": one report builder at a time, whichever replica
IN_DOUBT_AFTER = timedelta(minutes=5)  # a `sending` row this old lost its answer: reconcile it
_COLUMNS = """report_id, kind, period_start, period_end, generated_at, generated_by, recipients, email_state,
    email_attempts, email_error, emailed_at"""


def _view(r: Any, detail: bool = False) -> ReportView:
    data = {**r._asdict(), "title": TITLES[r.kind]}
    if detail:
        return ReportDetail.model_validate(data)
    data.pop("figures", None)
    return ReportView.model_validate(data)


async def generate(
    conn: AsyncConnection,
    kind: str,
    start: date,
    end: date,
    *,
    targets: list[KpiTarget],
    recipients: list[str],
    now: datetime,
    by: str,
    wait: bool = True,
) -> ReportView | None:
    """The report of (kind, period), built and stored in the caller's transaction; None when it exists
    already, or (`wait=False`) another replica is building a report right now."""
    if wait:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK})
    elif not (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK})).scalar():
        return None
    rid = report_id(kind, start)
    if (await conn.execute(text(f"SELECT 1 FROM {SCHEMA}.reports WHERE report_id = :r"), {"r": rid})).first():
        return None
    figures = await build(conn, kind, start, end, targets, now)
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.reports (report_id, kind, period_start, period_end, generated_at,
                    generated_by, figures, recipients, email_state)
                VALUES (:r, :k, :s, :e, :now, :by, CAST(:f AS jsonb), CAST(:to AS jsonb), :st)
                ON CONFLICT DO NOTHING RETURNING {_COLUMNS}"""
            ),
            {
                "r": rid,
                "k": kind,
                "s": start,
                "e": end,
                "now": now,
                "by": by,
                "f": json.dumps(figures, default=str),
                "to": json.dumps(recipients),
                "st": "pending" if recipients else "none",
            },
        )
    ).first()
    if row is None:
        return None
    metrics.REPORTS.labels(kind).inc()
    log.info("report generated", extra={"report_id": rid, "kind": kind, "by": by})
    return _view(row)


async def generate_due(
    engine: AsyncEngine, cfg: ReportsConfig, targets: list[KpiTarget], now: datetime
) -> list[ReportView]:
    """The last period's report of each kind whose time has come, if not made yet (one transaction each)."""
    made: list[ReportView] = []
    for kind in KINDS:
        if not cfg.due(kind, now):
            continue
        start, end = last_period(kind, now.date())
        async with engine.begin() as conn:
            done = (
                await conn.execute(
                    text(f"SELECT 1 FROM {SCHEMA}.reports WHERE report_id = :r"),
                    {"r": report_id(kind, start)},
                )
            ).first()
            if done:
                continue
            r = await generate(
                conn,
                kind,
                start,
                end,
                targets=targets,
                recipients=cfg.recipients,
                now=now,
                by="schedule",
                wait=False,
            )
            if r is not None:
                made.append(r)
    return made


async def list_reports(
    conn: AsyncConnection, kind: str | None = None, limit: int = 200, cursor: str | None = None
) -> tuple[list[ReportView], str | None]:
    """One page of stored reports, newest period first, and the cursor of the next page."""
    after, params = paging.after_sql(cursor, [("period_start", date), ("report_id", str)])
    rows = await conn.execute(
        text(
            f"""SELECT {_COLUMNS} FROM {SCHEMA}.reports WHERE (CAST(:k AS text) IS NULL OR kind = :k)
            AND {after} ORDER BY period_start DESC, report_id DESC LIMIT :n"""
        ),
        {"k": kind, "n": limit + 1, **params},
    )
    found, nxt = paging.page(list(rows), limit, lambda r: (r.period_start, r.report_id))
    return [_view(r) for r in found], nxt


async def get_report(conn: AsyncConnection, rid: str) -> ReportDetail | None:
    r = (
        await conn.execute(
            text(f"SELECT {_COLUMNS}, figures FROM {SCHEMA}.reports WHERE report_id = :r"), {"r": rid}
        )
    ).first()
    return _view(r, detail=True) if r else None  # type: ignore[return-value]


def files(report: ReportDetail) -> tuple[bytes, bytes]:
    return render.to_xlsx(report.figures), render.to_pdf(report.figures)


async def deliver(engine: AsyncEngine, cfg: ReportsConfig, now: datetime) -> int:
    """E-mail every report waiting to be sent (and reconcile those left in doubt). Returns how many were
    sent. A failure of one report leaves the others be."""
    sent = 0
    for rid in await _in_doubt(engine, now):
        await _reconcile(engine, cfg, rid)
    tried: list[str] = []  # one attempt per report per pass: a failed one waits for the next pass
    while (claimed := await _claim(engine, now, tried)) is not None:
        tried.append(claimed.report_id)
        sent += await _send(engine, cfg, claimed)
    return sent


async def _in_doubt(engine: AsyncEngine, now: datetime) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"""SELECT report_id FROM {SCHEMA}.reports WHERE email_state = 'sending'
                AND (emailed_at IS NULL OR emailed_at < :t)"""
            ),
            {"t": now - IN_DOUBT_AFTER},
        )
        return [r.report_id for r in rows]


async def _reconcile(engine: AsyncEngine, cfg: ReportsConfig, rid: str) -> None:
    try:
        found = await mailer.find_report_mail(cfg, rid)
    except ProviderError as e:
        log.warning("cannot reconcile a report e-mail yet", extra={"report_id": rid, "error": str(e)[:200]})
        return
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.reports SET email_state = :st, email_message_id = COALESCE(:m, email_message_id),
                email_error = :e WHERE report_id = :r AND email_state = 'sending'"""
            ),
            {
                "r": rid,
                "st": "sent" if found else "pending",
                "m": found,
                "e": None if found else "in doubt: not in the mailbox, sending again",
            },
        )
    metrics.REPORT_EMAILS.labels("reconciled_sent" if found else "reconciled_resend").inc()


async def _claim(engine: AsyncEngine, now: datetime, tried: list[str]) -> ReportDetail | None:
    """One pending report moved to `sending` (committed: from here a crash leaves it in doubt)."""
    async with engine.begin() as conn:
        r = (
            await conn.execute(
                text(
                    f"""SELECT report_id FROM {SCHEMA}.reports WHERE email_state = 'pending'
                    AND NOT (report_id = ANY(:tried)) ORDER BY generated_at LIMIT 1 FOR UPDATE SKIP LOCKED"""
                ),
                {"tried": tried},
            )
        ).first()
        if r is None:
            return None
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.reports SET email_state = 'sending', email_attempts = email_attempts + 1,
                emailed_at = :now WHERE report_id = :r"""
            ),
            {"r": r.report_id, "now": now},
        )
        return await get_report(conn, r.report_id)


async def _send(engine: AsyncEngine, cfg: ReportsConfig, report: ReportDetail) -> int:
    xlsx, pdf = files(report)
    period = f"{report.period_start} to {report.period_end}"
    send_to = ReportsConfig(**{**cfg.__dict__, "recipients": report.recipients})
    raw = mailer.build(
        send_to, report.report_id, report.title, period, xlsx, pdf, report.figures["red_flags"]
    )
    state, error, message_id = "sent", None, None
    try:
        message_id = await mailer.send_report_mail(send_to, raw)
    except ProviderInDoubt:
        log.warning("report e-mail in doubt; reconciled later", extra={"report_id": report.report_id})
        return 0
    except ProviderPermanentError as e:
        state, error = "failed", str(e)[:500]
    except ProviderError as e:
        state = "failed" if report.email_attempts >= cfg.max_attempts else "pending"
        error = str(e)[:500]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.reports SET email_state = :st, email_error = :e, email_message_id = :m,
                emailed_at = CASE WHEN :st = 'sent' THEN now() ELSE emailed_at END
                WHERE report_id = :r AND email_state = 'sending'"""
            ),
            {"r": report.report_id, "st": state, "e": error, "m": message_id},
        )
    metrics.REPORT_EMAILS.labels(state).inc()
    if state != "sent":
        log.warning(
            "report e-mail not sent", extra={"report_id": report.report_id, "state": state, "error": error}
        )
        return 0
    return 1
