"""Manual overrides API: pause/resume/snooze, skip/approve a step, send now, channel preference, dispute,
do-not-contact, notes; campaign pause/resume. Thin: roles, bodies, status codes."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from ..deps import Deps
from ..promises.service import PromiseView, add_promise, page_promises
from .models import (
    PG_INT_MAX,
    ChannelPreference,
    DoNotContact,
    Note,
    OverrideAccepted,
    Pause,
    Reason,
    RecordPromise,
    SendNow,
    Snooze,
)
from .service import add_note, request_override

AccountId = Path(min_length=1, max_length=64)
# its own Path(): FastAPI binds a Path() instance to the first parameter name it is used with, so sharing
# AccountId made every campaign route ask for a missing `account_id` (422)
CampaignId = Path(min_length=1, max_length=64)


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["overrides"])
        work = Depends(requires("accounts.work"))
        override = Depends(requires("overrides.write"))
        approver = Depends(requires("approvals.decide"))
        campaigns = Depends(requires("campaigns.write"))

        async def go(
            who: Principal, account_id: str, action: str, reason: str = "", **kw: object
        ) -> OverrideAccepted:
            async with get_context().transaction() as tx:
                return await request_override(
                    tx,
                    who,
                    account_id=account_id,
                    action=action,  # type: ignore[arg-type]  # each route passes its own literal
                    now=deps.clock.now(),
                    reason=reason,
                    **kw,  # type: ignore[arg-type]
                )

        @router.post("/accounts/{account_id}/pause", response_model=OverrideAccepted, status_code=202)
        async def pause(body: Pause, account_id: str = AccountId, who: Principal = work) -> OverrideAccepted:
            """Pause the account's dunning (until `until`, or until resumed)."""
            return await go(who, account_id, "pause", body.reason, until=body.until)

        @router.post("/accounts/{account_id}/resume", response_model=OverrideAccepted, status_code=202)
        async def resume(
            body: Reason, account_id: str = AccountId, who: Principal = work
        ) -> OverrideAccepted:
            return await go(who, account_id, "resume", body.reason)

        @router.post("/accounts/{account_id}/snooze", response_model=OverrideAccepted, status_code=202)
        async def snooze(
            body: Snooze, account_id: str = AccountId, who: Principal = work
        ) -> OverrideAccepted:
            return await go(who, account_id, "snooze", body.reason, until=body.until)

        @router.post(
            "/accounts/{account_id}/steps/{step}/skip", response_model=OverrideAccepted, status_code=202
        )
        async def skip(
            body: Reason,
            step: int = Path(ge=0, le=PG_INT_MAX),
            account_id: str = AccountId,
            who: Principal = override,
        ) -> OverrideAccepted:
            return await go(who, account_id, "skip_step", body.reason, step=step)

        @router.post(
            "/accounts/{account_id}/steps/{step}/approve", response_model=OverrideAccepted, status_code=202
        )
        async def approve(
            body: Reason,
            step: int = Path(ge=0, le=PG_INT_MAX),
            account_id: str = AccountId,
            who: Principal = approver,
        ) -> OverrideAccepted:
            """Release a step held for approval (supervisor)."""
            return await go(who, account_id, "approve_step", body.reason, step=step)

        @router.post("/accounts/{account_id}/send-now", response_model=OverrideAccepted, status_code=202)
        async def send_now(
            body: SendNow, account_id: str = AccountId, who: Principal = override
        ) -> OverrideAccepted:
            """Make a step due now. It still passes the compliance gate unless a supervisor sets
            `gate_override` with a reason."""
            if body.gate_override:
                if not who.can("approvals.decide"):
                    raise HTTPException(
                        403, "overriding the compliance gate needs the approvals.decide permission"
                    )
                if not body.reason.strip():
                    raise HTTPException(422, "a gate override needs a reason")
            return await go(
                who, account_id, "send_now", body.reason, step=body.step, gate_override=body.gate_override
            )

        @router.post(
            "/accounts/{account_id}/channel-preference", response_model=OverrideAccepted, status_code=202
        )
        async def channel_preference(
            body: ChannelPreference, account_id: str = AccountId, who: Principal = override
        ) -> OverrideAccepted:
            return await go(who, account_id, "set_channel_preference", body.reason, channels=body.channels)

        @router.post("/accounts/{account_id}/dispute", response_model=OverrideAccepted, status_code=202)
        async def dispute(
            body: Reason, account_id: str = AccountId, who: Principal = work
        ) -> OverrideAccepted:
            return await go(who, account_id, "mark_dispute", body.reason)

        @router.post(
            "/accounts/{account_id}/do-not-contact", response_model=OverrideAccepted, status_code=202
        )
        async def do_not_contact(
            body: DoNotContact, account_id: str = AccountId, who: Principal = override
        ) -> OverrideAccepted:
            return await go(who, account_id, "do_not_contact", body.reason, channels=body.channels)

        @router.post("/campaigns/{campaign_id}/pause", response_model=OverrideAccepted, status_code=202)
        async def campaign_pause(
            body: Pause, campaign_id: str = CampaignId, who: Principal = campaigns
        ) -> OverrideAccepted:
            """Pause a whole campaign (supervisor). The event's key is `campaign:<id>`."""
            return await go(
                who,
                f"campaign:{campaign_id}",
                "pause",
                body.reason,
                until=body.until,
                campaign_id=campaign_id,
            )

        @router.post("/campaigns/{campaign_id}/resume", response_model=OverrideAccepted, status_code=202)
        async def campaign_resume(
            body: Reason, campaign_id: str = CampaignId, who: Principal = campaigns
        ) -> OverrideAccepted:
            return await go(who, f"campaign:{campaign_id}", "resume", body.reason, campaign_id=campaign_id)

        @router.post("/accounts/{account_id}/promises", response_model=OverrideAccepted, status_code=202)
        async def promise(
            body: RecordPromise, account_id: str = AccountId, who: Principal = work
        ) -> OverrideAccepted:
            """Record a promise to pay a person took (phone, visit): the sequence holds until `due_date`, and
            the promise is tracked (kept when a payment covers it, broken after its date + grace)."""
            now = deps.clock.now()
            async with get_context().transaction() as tx:
                accepted = await request_override(
                    tx,
                    who,
                    account_id=account_id,
                    action="record_promise",
                    now=now,
                    reason=body.reason,
                    promise_date=body.due_date,
                    promise_amount_minor=body.amount_minor,
                )
                await add_promise(
                    tx.conn,
                    promise_id=f"manual:{accepted.override_id}",
                    account_id=account_id,
                    amount_minor=body.amount_minor,
                    due_date=body.due_date,
                    made_at=now,
                    channel=None,
                    collector=who.name,
                )
            return accepted

        @router.get(
            "/accounts/{account_id}/promises",
            response_model=list[PromiseView],
            dependencies=[Depends(requires("accounts.read"))],
            responses=paging.RESPONSES,
        )
        async def promises(
            request: Request,
            response: Response,
            account_id: str = AccountId,
            limit: int = Query(50, ge=1, le=200),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[PromiseView]:
            async with get_context().engine.connect() as conn:
                found, after = await page_promises(conn, account_id, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.post("/accounts/{account_id}/notes", status_code=201)
        async def note(body: Note, account_id: str = AccountId, who: Principal = work) -> dict[str, int]:
            async with get_context().transaction() as tx:
                note_id = await add_note(tx, who, account_id, body.body, body.case_id, deps.clock.now())
            return {"note_id": note_id}

        return router

    return factory
