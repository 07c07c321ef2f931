"""A score arrives: keep it, and run the `account_scored` rules once per band change.

The seeds' daily model run says: risk score above the high cut-off -> flag as high risk and assign to the
recovery team. The default rule `high_risk_score` (rules/default_rules.yaml) makes a task for the recovery
team when an account's band becomes high. The trigger id is the band and the score day the account entered
it, so the same band on the following days (the job scores every account daily), a replay or a second
replica never makes a second task, while an account that leaves the high band and comes back gets a new one.
A score older than the stored one changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from arrears_shared.events import AccountScored
from arrears_shared.money import format_minor
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from ..deps import Deps
from ..rules.flows import escalate
from ..rules.service import Facts
from .models import account_scores


async def on_account_scored(tx: Transaction, ev: AccountScored, deps: Deps, now: datetime) -> None:
    c = account_scores.c
    prev = (
        await tx.conn.execute(
            select(c.band, c.band_since, c.scored_on, c.scored_at)
            .where(c.account_id == ev.account_id)
            .with_for_update()
        )
    ).first()
    if prev is not None and (prev.scored_on, prev.scored_at) > (ev.scored_on, ev.scored_at):
        return  # an older score: the stored one stands
    band = ev.band.value
    since = prev.band_since if prev is not None and prev.band == band else ev.scored_on
    values = {
        "scored_on": ev.scored_on,
        "scored_at": ev.scored_at,
        "model_version": ev.model_version,
        "risk_score": ev.risk_score,
        "band": band,
        "band_since": since,
        "expected_recovery_minor": ev.expected_recovery_minor,
        "currency": ev.currency,
        "expected_recovery_reporting_minor": deps.rates.to_reporting_minor(
            ev.expected_recovery_minor, ev.currency
        ),
        "updated_at": now,
    }
    await tx.conn.execute(
        insert(account_scores)
        .values(account_id=ev.account_id, **values)
        .on_conflict_do_update(index_elements=[c.account_id], set_=values)
    )
    reasons = "; ".join(r.label for r in ev.reasons[:3])
    detail = (
        f"model {ev.model_version}: risk {ev.risk_score} ({band}) since {since.isoformat()}, "
        f"payment in 14 days {ev.p_pay_14d:.0%}, expected recovery "
        f"{format_minor(ev.expected_recovery_minor, ev.currency)}" + (f"; {reasons}" if reasons else "")
    )[:500]
    await escalate(
        tx,
        deps,
        "account_scored",
        Facts(band=band, risk_score=ev.risk_score),
        account_id=ev.account_id,
        trigger_id=f"score-band:{band}:{since.isoformat()}",
        detail=detail,
        now=now,
    )
