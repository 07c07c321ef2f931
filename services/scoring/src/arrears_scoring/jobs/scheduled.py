"""The scoring loop: every `scoring_check_every_s`, train when no model is active (or the last training is
older than `scoring_retrain_every_days`), then run the day's scoring once it is due. Every replica runs it;
the run lock and the `runs` row make one of them do each day (jobs/daily.py), the training lock and the
activation rule make a second training of the same history harmless (models/store.py). Each round every
replica also reports the latest committed run (from the database) for the missed-run alert."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from arrears_shared.events import utcnow
from arrears_shared.service import Context
from sqlalchemy import text

from .. import metrics
from ..models.training import InsufficientHistory
from ..settings import ScoringSettings
from .daily import NoActiveModel, RunResult, run_day
from .train import train_on_history, train_on_simulation

log = logging.getLogger(__name__)


_retry_after: datetime | None = None  # this replica's next training try after too little history


def _back_off(until: datetime) -> None:
    global _retry_after
    _retry_after = until


async def ensure_models(ctx: Context, now: datetime) -> None:
    s: ScoringSettings = ctx.settings  # type: ignore[assignment]
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    f"""SELECT count(*) FILTER (WHERE active) AS active, max(created_at) AS latest
                        FROM {ctx.schema}.models"""
                )
            )
        ).one()
    due = row.active < 3 or (
        s.scoring_retrain_every_days > 0
        and (row.latest is None or now - row.latest >= timedelta(days=s.scoring_retrain_every_days))
    )
    if not due or (_retry_after is not None and now < _retry_after):
        return
    try:
        await train_on_history(ctx.engine, ctx.schema, now=now, by="schedule")
        return
    except InsufficientHistory as e:
        if row.active >= 3 or not s.scoring_demo_model:
            # not every check: each try reads the whole history
            _back_off(now + timedelta(seconds=s.scoring_training_retry_s))
            if row.active >= 3:
                log.info("no retraining: too little history", extra={"detail": str(e)})
            else:
                log.warning("no active model and too little history to train one", extra={"detail": str(e)})
            return
    log.warning("DEMO: training on simulated customers (ARREARS_SCORING_DEMO_MODEL)")
    await train_on_simulation(ctx.engine, ctx.schema, now=now, by="demo", accounts=s.scoring_demo_accounts)


async def run_today(ctx: Context, now: datetime, by: str) -> RunResult:
    s: ScoringSettings = ctx.settings  # type: ignore[assignment]
    async with ctx.transaction() as tx:
        return await run_day(tx, now.astimezone(UTC).date(), now=now, by=by, reasons=s.scoring_reasons)


async def scoring_loop(ctx: Context) -> None:
    s: ScoringSettings = ctx.settings  # type: ignore[assignment]
    if s.scoring_start_delay_s and not await ctx.sleep(s.scoring_start_delay_s):
        return
    while True:
        now = utcnow()
        try:
            await ensure_models(ctx, now)
            if now.astimezone(UTC).hour >= s.scoring_run_hour_utc:
                await run_today(ctx, now, "schedule")
        except NoActiveModel as e:
            log.warning("scoring run waits for a model", extra={"detail": str(e)})
        except Exception:
            log.exception("scoring loop failed; retrying next round")
        try:
            await report_last_run(ctx)
        except Exception:
            log.exception("could not read the latest scoring run")
        if not await ctx.sleep(s.scoring_check_every_s):
            return


async def report_last_run(ctx: Context) -> None:
    """Set `arrears_scoring_last_run_timestamp_seconds` from the `runs` table: whichever replica ran the day,
    every replica reports it, so the missed-run alert (ArrearsScoringRunMissed) sees one truth."""
    async with ctx.engine.connect() as conn:
        latest = (await conn.execute(text(f"SELECT max(finished_at) FROM {ctx.schema}.runs"))).scalar()
    metrics.LAST_RUN.set(latest.timestamp() if latest is not None else 0)
