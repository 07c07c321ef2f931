"""What happens when one due timer fires (pure): stop, pause, hold for approval, or put each channel
through the compliance gate and emit, defer or suppress. The caller writes the outcome set-based."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared import compliance
from arrears_shared.compliance import RuleSet
from arrears_shared.events import Channel, NoticeDue, Tier

from ..accounts.projection import (
    FoldContext,
    Row,
    decision,
    paused_until,
    preferred_channels,
    promise_resume_at,
    refresh_segment,
    send_now_of,
)
from ..campaigns.models import Campaign
from ..campaigns.service import pick
from ..policy.models import Policy, StopCondition
from ..policy.planner import stop_reason
from ..segments import risk_band

PRIORITY = {Tier.REMINDER: 10, Tier.FIRM: 20, Tier.FINAL: 30}
FREQUENCY_LOOKBACK = timedelta(days=31)
CAMPAIGN_PAUSE_RECHECK = timedelta(days=1)  # an open-ended campaign pause is looked at again this often
# a supervisor's gate override lifts time and frequency rules, never a stop the debtor or the law asked for
NEVER_OVERRIDDEN = ("do_not_contact", "opt_out")


def notice_id(account_id: str, policy_id: str, version: int, step: int, cycle: int, channel: str) -> str:
    return f"{account_id}:{policy_id}:v{version}:s{step}:c{cycle}:{channel}"


@dataclass
class Sent:
    """An account's notice history as the gate needs it."""

    channels_by_step: dict[tuple[int, int], set[str]] = field(
        default_factory=dict
    )  # (cycle, step) -> channels
    times: dict[str, list[datetime]] = field(default_factory=dict)  # channel -> emitted_at


@dataclass
class Fired:
    timer: Row  # id + changed columns
    decisions: list[Row] = field(default_factory=list)
    notices: list[tuple[Row, NoticeDue]] = field(default_factory=list)
    step_done: bool = False  # account row updated (last_step ...): plan the next step


def channel_block(acct: Row, channel: Channel) -> tuple[str, str] | None:
    """Why the account cannot be reached on `channel` at all (rule id, reason), or None if it can."""
    if acct[f"{channel.value}_do_not_contact"]:
        return f"do_not_contact.{channel}", f"a person stopped {channel} contact"
    if channel is Channel.SMS:
        address, consent, invalid = acct["phone"], acct["sms_consent"], acct["sms_invalid"]
    else:
        address, consent, invalid = acct["email"], acct["email_consent"], acct["email_invalid"]
    if not address:
        return f"no_address.{channel}", f"no {channel} address on file"
    if not consent:
        return f"no_consent.{channel}", f"no {channel} consent"
    if invalid:
        return f"invalid_address.{channel}", f"{channel} address failed permanently"
    return None


def fire(
    acct: Row,
    timer: Any,
    policy: Policy,
    sent: Sent,
    active_campaigns: Sequence[Campaign],
    rules: RuleSet,
    ctx: FoldContext,
) -> Fired:
    """Decide one due timer. Mutates `acct` (the locked account row) when the step completes or a promise
    is found broken."""
    now = ctx.now
    step_no, cycle = timer.step, timer.cycle
    out = Fired(timer={"id": timer.id})
    kw = {"step": step_no, "cycle": cycle}
    why = stop_reason(acct, policy)
    if why is None and (step_no > policy.last_step or cycle != acct["cycle"] or step_no <= acct["last_step"]):
        why = "stale_timer"
    if why is not None:
        out.timer.update(state="cancelled", reason=why)
        out.decisions.append(decision(acct, ctx, "cancelled", why, **kw))
        return out
    resume = promise_resume_at(acct)
    if resume is not None and policy.stops(StopCondition.PROMISE_TO_PAY):
        if resume > now:
            out.timer.update(due_at=resume, attempts=timer.attempts + 1, reason="promise_pause")
            out.decisions.append(
                decision(
                    acct,
                    ctx,
                    "deferred",
                    "promise_pause",
                    f"paused until {acct['paused_until']}",
                    defer_until=resume,
                    **kw,
                )
            )
            return out
        acct.update(hold=None, status=acct["source_status"], paused_until=None)
        acct["broken_promises"] += 1
        out.step_done = True  # the account row changed: write it back
        out.decisions.append(decision(acct, ctx, "updated", "promise_broken", "promised date passed unpaid"))
    until = paused_until(acct)
    if until is not None and until > now:
        out.timer.update(due_at=until, attempts=timer.attempts + 1, reason="manual_pause")
        note = f"paused by {acct['paused_by']}" + (
            f" ({acct['pause_reason']})" if acct["pause_reason"] else ""
        )
        out.decisions.append(decision(acct, ctx, "deferred", "override.pause", note, defer_until=until, **kw))
        return out
    if until is not None:  # the pause is over
        acct.update(paused_by=None, pause_until=None, pause_reason=None)
    refresh_segment(acct, ctx)
    so = send_now_of(acct, step_no, cycle)
    if timer.approved_by is None and not (so is not None and so.get("approved")):
        held = policy.needs_approval(acct["balance_minor"], acct["currency"], acct["complex"], ctx.rates)
        if held is not None:
            out.timer.update(state="held", reason=held)
            out.decisions.append(decision(acct, ctx, "held", held, "waiting for a person to approve", **kw))
            return out
    step = policy.get(step_no)
    dpd, bucket = acct["days_past_due"], acct["aging_bucket"]
    campaign_id = pick(active_campaigns, acct, dpd, bucket, risk_band(acct["risk_score"]), ctx.rates)
    camp = next((c for c in active_campaigns if c.campaign_id == campaign_id), None)
    if (
        camp is not None
        and camp.paused_by is not None
        and (camp.pause_until is None or camp.pause_until > now)
    ):
        until = camp.pause_until or now + CAMPAIGN_PAUSE_RECHECK
        out.timer.update(due_at=until, attempts=timer.attempts + 1, reason=f"campaign_pause:{campaign_id}")
        note = f"campaign {campaign_id} paused by {camp.paused_by}" + (
            f" ({camp.pause_reason})" if camp.pause_reason else ""
        )
        out.decisions.append(
            decision(acct, ctx, "deferred", "override.campaign_pause", note, defer_until=until, **kw)
        )
        return out
    channels = preferred_channels(acct) or step.channels
    gate_override = so if so is not None and so.get("gate_override") else None
    opted_out = {c for c in (Channel.SMS, Channel.EMAIL) if acct[f"{c.value}_opt_out"]}
    done = sent.channels_by_step.setdefault((cycle, step_no), set())
    defer_until: list[datetime] = []
    allowed: list[tuple[Channel, compliance.Decision]] = []
    since = now - FREQUENCY_LOOKBACK
    for ch in channels:
        if ch.value in done:
            if step.channel_mode == "fallback":
                break  # already sent on one channel: the step is done
            continue
        block = channel_block(acct, ch)
        if block is not None and ch not in opted_out:
            out.decisions.append(
                decision(acct, ctx, "suppressed", block[0], block[1], channel=ch.value, **kw)
            )
            continue
        d = compliance.evaluate(
            now,
            channel=ch,
            timezone=acct["timezone"],
            country=acct["country"],
            region=acct["region"],
            opted_out_channels=opted_out,
            do_not_contact=acct["do_not_contact"],
            recent_sends=[t for t in sent.times.get(ch.value, ()) if t > since],
            rules=rules,
        )
        if not d.allowed and gate_override is not None and not d.rule_id.startswith(NEVER_OVERRIDDEN):
            d = compliance.Decision(
                allowed=True,
                rule_id="override.gate",
                reason=f"{d.rule_id} overridden by {gate_override['actor']}: {gate_override['reason']}",
            )
        if d.allowed:
            allowed.append((ch, d))
            if step.channel_mode == "fallback":
                break
        elif d.defer_until is not None:
            defer_until.append(d.defer_until)
            out.decisions.append(
                decision(
                    acct,
                    ctx,
                    "deferred",
                    d.rule_id,
                    d.reason,
                    channel=ch.value,
                    defer_until=d.defer_until,
                    **kw,
                )
            )
            if step.channel_mode == "fallback":
                break  # the preferred channel is only later: wait for it rather than fall back
        else:
            out.decisions.append(
                decision(acct, ctx, "suppressed", d.rule_id, d.reason, channel=ch.value, **kw)
            )
    version = timer.policy_version or policy.version
    for ch, d in allowed:
        nid = notice_id(acct["account_id"], policy.id, version, step_no, cycle, ch.value)
        rest = channels[channels.index(ch) + 1 :] if step.channel_mode == "fallback" else []
        fallback = [c for c in rest if channel_block(acct, c) is None and c not in opted_out]
        ev = NoticeDue(
            account_id=acct["account_id"],
            notice_id=nid,
            policy_id=policy.id,
            policy_version=version,
            step=step_no,
            cycle=cycle,
            tier=step.tier,
            channel=ch,
            fallback_channels=fallback,
            fallback_to={c: acct["phone"] if c is Channel.SMS else acct["email"] for c in fallback},
            template_id=step.template_id,
            campaign_id=campaign_id,
            priority=PRIORITY[step.tier],
            to=acct["phone"] if ch is Channel.SMS else acct["email"],
            customer_name=acct["customer_name"],
            balance_minor=acct["balance_minor"],
            currency=acct["currency"],
            days_past_due=dpd,
            aging_bucket=bucket,
            timezone=acct["timezone"],
            country=acct["country"],
            region=acct["region"],
            # due when the timer fires; a clock shifted ahead (demos, `arrears simulate`) must not make the
            # dispatchers hold the notice until that virtual moment
            due_at=min(now, datetime.now(UTC)),
        )
        row = {
            "notice_id": nid,
            "account_id": acct["account_id"],
            "policy_id": policy.id,
            "policy_version": version,
            "step": step_no,
            "cycle": cycle,
            "channel": ch.value,
            "tier": step.tier.value,
            "emitted_at": now,
            "campaign_id": campaign_id,
        }
        out.notices.append((row, ev))
        done.add(ch.value)
        sent.times.setdefault(ch.value, []).append(now)
        out.decisions.append(
            decision(
                acct,
                ctx,
                "emitted",
                d.rule_id,
                f"{d.reason}; campaign {campaign_id}",
                channel=ch.value,
                notice_id=nid,
                **kw,
            )
        )
    if defer_until:
        out.timer.update(due_at=min(defer_until), attempts=timer.attempts + 1, reason="deferred")
        return out
    out.timer.update(state="fired" if done else "suppressed", reason=None if done else "no channel allowed")
    acct.update(last_step=step_no, last_step_at=now)
    if acct["send_now"] and acct["send_now"]["step"] <= step_no:
        acct["send_now"] = None  # done (or overtaken)
    out.step_done = True
    return out
