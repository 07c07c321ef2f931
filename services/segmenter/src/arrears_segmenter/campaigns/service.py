"""Campaign store (plain functions over a connection); which campaign targets an account is
`models.pick_campaign`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared import paging
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import TRANSITIONS, Campaign, CampaignIn, CampaignStatus, CampaignUpdate, Criteria, campaigns


class CampaignConflict(ValueError):
    pass


def _model(r: Any) -> Campaign:
    return Campaign(
        campaign_id=r.campaign_id,
        name=r.name,
        owner=r.owner,
        goal=r.goal,
        criteria=Criteria.model_validate(r.criteria),
        priority=r.priority,
        status=CampaignStatus(r.status),
        created_at=r.created_at,
        updated_at=r.updated_at,
        paused_by=r.paused_by,
        pause_until=r.pause_until,
        pause_reason=r.pause_reason,
        goal_minor=r.goal_minor,
        goal_currency=r.goal_currency,
    )


async def list_campaigns(conn: AsyncConnection, status: CampaignStatus | None = None) -> list[Campaign]:
    """Every campaign (all pages), highest priority first."""
    out: list[Campaign] = []
    cursor: str | None = None
    while True:
        found, cursor = await page_campaigns(conn, status, 500, cursor)
        out += found
        if cursor is None:
            return out


async def page_campaigns(
    conn: AsyncConnection, status: CampaignStatus | None = None, limit: int = 200, cursor: str | None = None
) -> tuple[list[Campaign], str | None]:
    """One page, highest priority first (then oldest), and the cursor of the next page."""
    c = campaigns.c
    q = paging.keyset(
        select(campaigns), (c.priority, c.created_at, c.campaign_id), cursor, limit, (True, False, False)
    )
    if status is not None:
        q = q.where(c.status == status.value)
    rows, after = paging.page(
        (await conn.execute(q)).all(), limit, lambda r: (r.priority, r.created_at, r.campaign_id)
    )
    return [_model(r) for r in rows], after


async def get(conn: AsyncConnection, campaign_id: str) -> Campaign | None:
    r = (await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id))).first()
    return _model(r) if r is not None else None


async def create(conn: AsyncConnection, body: CampaignIn, now: datetime) -> Campaign:
    res = await conn.execute(
        insert(campaigns)
        .values(
            **body.model_dump(mode="json"),
            status=CampaignStatus.PLANNED.value,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(campaigns.c.campaign_id)
    )
    if res.first() is None:
        raise CampaignConflict(f"campaign {body.campaign_id!r} already exists")
    c = await get(conn, body.campaign_id)
    assert c is not None
    return c


async def transition(conn: AsyncConnection, campaign_id: str, to: CampaignStatus, now: datetime) -> Campaign:
    r = (
        await conn.execute(select(campaigns).where(campaigns.c.campaign_id == campaign_id).with_for_update())
    ).first()
    if r is None:
        raise KeyError(campaign_id)
    current = CampaignStatus(r.status)
    if to not in TRANSITIONS[current]:
        allowed = sorted(s.value for s in TRANSITIONS[current]) or ["none (final)"]
        raise CampaignConflict(f"cannot go from {current} to {to}; allowed: {', '.join(allowed)}")
    await conn.execute(
        campaigns.update()
        .where(campaigns.c.campaign_id == campaign_id)
        .values(status=to.value, updated_at=now)
    )
    c = await get(conn, campaign_id)
    assert c is not None
    return c


async def set_pause(
    conn: AsyncConnection,
    campaign_id: str,
    *,
    by: str | None,
    until: datetime | None,
    reason: str | None,
    now: datetime,
) -> bool:
    """Pause (`by` set) or resume (`by` None) a campaign. False if there is no such campaign."""
    res = await conn.execute(
        campaigns.update()
        .where(campaigns.c.campaign_id == campaign_id)
        .values(paused_by=by, pause_until=until, pause_reason=reason, updated_at=now)
        .returning(campaigns.c.campaign_id)
    )
    return res.first() is not None


async def update(conn: AsyncConnection, campaign_id: str, body: CampaignUpdate, now: datetime) -> Campaign:
    """Change the given fields (KeyError: no such campaign; CampaignConflict: a goal amount without its
    currency)."""
    current = await get(conn, campaign_id)
    if current is None:
        raise KeyError(campaign_id)
    changes = body.model_dump(include=body.model_fields_set)
    after = current.model_copy(update=changes)
    if after.goal_minor is not None and after.goal_currency is None:
        raise CampaignConflict("goal_minor needs goal_currency")
    if changes:
        await conn.execute(
            campaigns.update().where(campaigns.c.campaign_id == campaign_id).values(**changes, updated_at=now)
        )
    c = await get(conn, campaign_id)
    assert c is not None
    return c
