"""Scoring API: an account's latest score and reasons (accounts.read), model versions with their metrics and
the daily runs (reports.read), and, for admins and automation (scoring.run), train now and run the day now.
Both changes are audited; running a day that has run already changes nothing and says so."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.events import utcnow
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from ..jobs.daily import NoActiveModel, run_day
from ..jobs.train import train_on_history, train_on_simulation
from ..models.store import ModelView, page_models
from ..models.training import InsufficientHistory
from ..settings import ScoringSettings


class ReasonView(BaseModel):
    feature: str
    label: str
    contribution: float


class ScoreView(BaseModel):
    account_id: str
    scored_on: date
    model_version: str
    models: dict[str, str]
    risk_score: int
    band: str
    p_pay_14d: float
    dropout_risk: float
    expected_recovery: float
    expected_recovery_minor: int
    currency: str
    best_channel: str | None
    best_hour: int | None
    reasons: list[ReasonView]
    scored_at: datetime
    features_as_of: datetime


class AccountScores(BaseModel):
    latest: ScoreView
    previous: list[ScoreView] = Field(description="Earlier days' scores, newest first (at most 30)")


class TrainRequest(BaseModel):
    source: Literal["history", "simulated"] = Field(
        "history",
        description="`history`: the service's own history before today; `simulated`: a demo model on "
        "simulated customers (stored as such)",
    )
    accounts: int = Field(5000, ge=200, le=200_000, description="`simulated`: how many customers")
    seed: int = Field(20, description="`simulated`: the simulation's seed")


class RunRequest(BaseModel):
    day: date | None = Field(
        None, description="UTC day to score (default today); a day that ran is not rerun"
    )


class RunView(BaseModel):
    day: date
    ran: bool
    accounts: int
    published: int
    model_version: str | None
    detail: str


class RunRow(BaseModel):
    day: date
    started_at: datetime
    finished_at: datetime
    accounts: int
    published: int
    model_version: str
    run_by: str


_SCORE_COLS = """account_id, scored_on, model_version, models, risk_score, band, p_pay_14d, dropout_risk,
    expected_recovery, expected_recovery_minor, currency, best_channel, best_hour, reasons, scored_at,
    features_as_of"""


def scoring_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["scoring"])

    @router.get("/scores/{account_id}", response_model=AccountScores)
    async def account_score(
        account_id: str, _: Principal = Depends(requires("accounts.read"))
    ) -> AccountScores:
        """The account's latest score with its top reasons, and the scores of the days before."""
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""SELECT {_SCORE_COLS} FROM {ctx.schema}.scores WHERE account_id = :a
                            ORDER BY scored_on DESC LIMIT 31"""
                    ),
                    {"a": account_id},
                )
            ).all()
        if not rows:
            raise HTTPException(404, "no score for this account")
        views = [ScoreView.model_validate(r._asdict()) for r in rows]
        return AccountScores(latest=views[0], previous=views[1:])

    @router.get("/models", response_model=list[ModelView], responses=paging.RESPONSES)
    async def models(
        request: Request,
        response: Response,
        kind: Literal["pay14", "dropout", "recovery"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
        _: Principal = Depends(requires("reports.read")),
    ) -> list[ModelView]:
        """Every model version, newest first: metrics on its test window (AUC, Brier score and calibration
        bins, or MAE and R²), training and test windows, whether it is active and why."""
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found, after = await page_models(conn, ctx.schema, kind, limit, cursor)
        paging.announce(request, response, after)
        return found

    @router.get("/scoring/runs", response_model=list[RunRow], responses=paging.RESPONSES)
    async def runs(
        request: Request,
        response: Response,
        limit: int = Query(30, ge=1, le=366),
        cursor: str | None = paging.CURSOR_QUERY,
        _: Principal = Depends(requires("reports.read")),
    ) -> list[RunRow]:
        """The daily runs, newest first."""
        ctx = get_context()
        after, params = paging.after_sql(cursor, [("day", date)])
        async with ctx.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""SELECT day, started_at, finished_at, accounts, published, model_version, run_by
                            FROM {ctx.schema}.runs WHERE {after} ORDER BY day DESC LIMIT :n"""
                    ),
                    {"n": limit + 1, **params},
                )
            ).all()
        found, nxt = paging.page(rows, limit, lambda r: (r.day,))
        paging.announce(request, response, nxt)
        return [RunRow.model_validate(r._asdict()) for r in found]

    @router.post("/models/train", response_model=list[ModelView])
    async def train(body: TrainRequest, who: Principal = Depends(requires("scoring.run"))) -> list[ModelView]:
        """Train the three models now and store them; each is activated only if it beats the active one on
        the latest window."""
        ctx = get_context()
        now = utcnow()
        if body.source == "simulated" and not ctx.settings.scoring_demo_model:  # type: ignore[attr-defined]
            raise HTTPException(
                409, "training on simulated customers is for demos (ARREARS_SCORING_DEMO_MODEL)"
            )
        try:
            if body.source == "history":
                made = await train_on_history(ctx.engine, ctx.schema, now=now, by=who.name)
            else:
                made = await train_on_simulation(
                    ctx.engine, ctx.schema, now=now, by=who.name, accounts=body.accounts, seed=body.seed
                )
        except InsufficientHistory as e:
            raise HTTPException(409, f"not enough history to train: {e}") from e
        async with ctx.engine.begin() as conn:
            await record(
                conn,
                ctx.schema,
                who,
                "models.train",
                "model",
                ",".join(m.version for m in made),
                after=_summary(made),
            )
        return made

    @router.post("/scoring/run", response_model=RunView)
    async def run(body: RunRequest, who: Principal = Depends(requires("scoring.run"))) -> RunView:
        """Run a day's scoring now (default today). Idempotent: a day that ran already publishes nothing."""
        ctx = get_context()
        s: ScoringSettings = ctx.settings  # type: ignore[assignment]
        now = utcnow()
        day = body.day or now.date()
        if day > now.date():
            raise HTTPException(422, "cannot score a day that has not started")
        try:
            async with ctx.transaction() as tx:
                result = await run_day(tx, day, now=now, by=who.name, reasons=s.scoring_reasons)
                await record(
                    tx.conn,
                    ctx.schema,
                    who,
                    "scoring.run",
                    "scoring_day",
                    day.isoformat(),
                    after={"ran": result.ran, "accounts": result.accounts, "published": result.published},
                )
        except NoActiveModel as e:
            raise HTTPException(409, str(e)) from e
        return RunView(**result.__dict__)

    return router


def _summary(made: list[ModelView]) -> dict[str, Any]:
    return {m.version: {"active": m.active, "decision": m.decision} for m in made}
