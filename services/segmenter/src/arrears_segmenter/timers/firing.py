"""What happens when one due timer fires (pure): stop, pause, hold for approval, or put each channel
through the compliance gate and emit, defer or suppress. The caller writes the outcome set-based.

`fire` runs the steps in order and stops at the first that settles the timer:
  1. `_stop_reason`        the account may not be dunned at all, or the timer is stale -> cancelled
  2. `_promise_pause`      a promise's day has not passed -> deferred (a passed one counts a broken promise)
  3. `_manual_pause`       a person's timed pause is on -> deferred (an ended one is cleared)
  4. `_approval_rule`      a high-balance or complex account waits for a person -> held
  5. `_campaign_pause`     the account's campaign is paused -> deferred
  6. `_gate_channels`      each channel through the compliance gate: allowed, deferred or suppressed
  7. `_emit`               a notice per allowed channel
  8. `_finish_step`        deferred to the gate's earliest time, or done (fired / suppressed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared import compliance
from arrears_shared.compliance import RuleSet
from arrears_shared.events import NoticeDue, Tier

from ..accounts.account import Account, SendNow
from ..accounts.projection import DecisionRow, FoldContext, decision, refresh_segment
from ..campaigns.models import Campaign, pick_campaign
from ..preferences.window import debtor_window
from ..schedule.models import Policy, PolicyStep, StopCondition
from ..schedule.planner import stop_reason
from ..scores.choice import band_for, order_channels
from ..scores.models import Score

PRIORITY = {Tier.REMINDER: 10, Tier.FIRM: 20, Tier.FINAL: 30}
FREQUENCY_LOOKBACK = timedelta(days=31)
CAMPAIGN_PAUSE_RECHECK = timedelta(days=1)  # an open-ended campaign pause is looked at again this often
# a supervisor's gate override lifts time and frequency rules, never a stop the debtor or the law asked for
NEVER_OVERRIDDEN = ("do_not_contact", "opt_out")

NoticeRow = dict[str, Any]  # a row of segmenter.notices


def notice_id(account_id: str, policy_id: str, version: int, step: int, cycle: int, channel: str) -> str:
    return f"{account_id}:{policy_id}:v{version}:s{step}:c{cycle}:{channel}"


@dataclass(slots=True)
class DueTimer:
    """The columns of a due timer that firing reads (the due-query selects them in this order)."""

    id: int
    step: int
    cycle: int
    attempts: int
    due_at: datetime
    policy_id: str | None
    policy_version: int | None
    approved_by: str | None


@dataclass
class Sent:
    """An account's notice history as the gate needs it."""

    channels_by_step: dict[tuple[int, int], set[str]] = field(
        default_factory=dict
    )  # (cycle, step) -> channels
    times: dict[str, list[datetime]] = field(default_factory=dict)  # channel -> emitted_at


@dataclass
class Fired:
    """The outcome of one timer: its new state, the decisions to log and the notices to emit."""

    timer: DueTimer
    account_id: str
    ctx: FoldContext
    state: str = "pending"
    due_at: datetime | None = None  # None: unchanged
    attempts: int | None = None  # None: unchanged
    reason: str | None = None
    decisions: list[DecisionRow] = field(default_factory=list)
    notices: list[tuple[NoticeRow, NoticeDue]] = field(default_factory=list)
    step_done: bool = False  # account row updated (last_step ...): plan the next step

    def log(self, outcome: str, rule_id: str, reason: str = "", **kw: Any) -> None:
        """A decision about this timer's step."""
        self.decisions.append(
            decision(
                self.account_id,
                self.ctx,
                outcome,
                rule_id,
                reason,
                step=self.timer.step,
                cycle=self.timer.cycle,
                **kw,
            )
        )

    def cancel(self, why: str) -> Fired:
        self.state, self.reason = "cancelled", why
        self.log("cancelled", why)
        return self

    def hold(self, rule_id: str) -> Fired:
        self.state, self.reason = "held", rule_id
        self.log("held", rule_id, "waiting for a person to approve")
        return self

    def defer(self, until: datetime, reason: str) -> None:
        """The timer stays pending and fires again at `until`."""
        self.due_at, self.attempts, self.reason = until, self.timer.attempts + 1, reason

    def timer_row(self) -> dict[str, Any]:
        """The timer's update (every column it may change)."""
        t = self.timer
        return {
            "id": t.id,
            "state": self.state,
            "due_at": self.due_at if self.due_at is not None else t.due_at,
            "attempts": self.attempts if self.attempts is not None else t.attempts,
            "reason": self.reason,
            "updated_at": self.ctx.now,
        }


def channel_block(acct: Account, channel: str) -> tuple[str, str] | None:
    """Why the account cannot be reached on `channel` at all (rule id, reason), or None if it can."""
    if acct.channel_stopped(channel):
        return f"do_not_contact.{channel}", f"a person stopped {channel} contact"
    if not acct.address(channel):
        return f"no_address.{channel}", f"no {channel} address on file"
    if not acct.consented(channel):
        return f"no_consent.{channel}", f"no {channel} consent"
    if acct.address_invalid(channel):
        return f"invalid_address.{channel}", f"{channel} address failed permanently"
    return None


def fire(
    acct: Account,
    timer: DueTimer,
    policy: Policy,
    sent: Sent,
    active_campaigns: Sequence[Campaign],
    rules: RuleSet,
    ctx: FoldContext,
    score: Score | None = None,
) -> Fired:
    """Decide one due timer. Mutates `acct` (the locked account) when the step completes or a promise is
    found broken. `score`: the account's fresh model score, if any (its band for campaigns, its best channel
    first: scores.choice)."""
    out = Fired(timer=timer, account_id=acct.account_id, ctx=ctx)
    why = _stop_reason(acct, timer, policy)
    if why is not None:
        return out.cancel(why)
    if _promise_pause(out, acct, policy) or _manual_pause(out, acct):
        return out
    refresh_segment(acct, ctx)
    send_now = acct.pending_send_now(timer.step, timer.cycle)
    band = band_for(acct, score)
    if send_now is None and not policy.applies(timer.step, band):
        # not for the account's band now (its band moved since planning, or no later step was for its band
        # and this one was armed to be decided now): the step is passed over for good — `last_step` moves
        # on, `last_step_at` (the last step sent) stays — and re-planning arms the next one
        acct.last_step = timer.step
        out.step_done = True
        return out.cancel("risk_band")
    held = _approval_rule(acct, timer, policy, send_now, ctx)
    if held is not None:
        return out.hold(held)
    campaign = pick_campaign(active_campaigns, acct, acct.days_past_due, acct.aging_bucket, band, ctx.rates)
    if _campaign_pause(out, campaign):
        return out
    step = policy.get(timer.step)
    channels = acct.preferred_channels() or order_channels(step.channels, acct, score)
    done = sent.channels_by_step.setdefault((timer.cycle, timer.step), set())
    gate_override = send_now if send_now is not None and send_now.get("gate_override") else None
    allowed, defer_until = _gate_channels(out, acct, step, channels, done, sent, gate_override, rules)
    campaign_id = campaign.campaign_id if campaign is not None else None
    _emit(out, acct, policy, step, channels, allowed, campaign_id, done, sent, band)
    _finish_step(out, acct, defer_until, done)
    return out


def fall_back(
    acct: Account,
    timer: DueTimer,
    policy: Policy,
    sent: Sent,
    rules: RuleSet,
    ctx: FoldContext,
    campaign_id: str | None,
    score: Score | None = None,
) -> Fired:
    """A notice of `timer`'s step failed permanently (`sent` no longer counts it): the step goes out on its
    next usable channel, through the same gate, if the step falls back (`channel_mode: fallback`) and the
    account is still in that cycle and may be dunned. A channel only allowed later goes out then (its
    notice is due at that time). The segmenter owns this, as it owns the channel order."""
    out = Fired(timer=timer, account_id=acct.account_id, ctx=ctx)
    step = policy.get(timer.step)
    if step.channel_mode != "fallback" or timer.cycle != acct.cycle or stop_reason(acct, policy) is not None:
        return out
    channels = acct.preferred_channels() or order_channels(step.channels, acct, score)
    done = sent.channels_by_step.setdefault((timer.cycle, timer.step), set())
    allowed, defer_until = _gate_channels(out, acct, step, channels, done, sent, None, rules)
    if not allowed and defer_until:
        later = next(d for d in reversed(out.decisions) if d["outcome"] == "deferred")
        allowed = [
            (
                later["channel"],
                compliance.Decision(allowed=True, rule_id="fallback.later", reason=later["reason"]),
            )
        ]
    _emit(out, acct, policy, step, channels, allowed, campaign_id, done, sent, band_for(acct, score))
    if defer_until and out.notices:
        row, ev = out.notices[-1]
        out.notices[-1] = (row, ev.model_copy(update={"due_at": min(defer_until)}))
    return out


def _stop_reason(acct: Account, timer: DueTimer, policy: Policy) -> str | None:
    """Why the timer is cancelled: a stop condition of the account, or a timer the plan no longer has."""
    why = stop_reason(acct, policy)
    if why is None and (
        timer.step > policy.last_step or timer.cycle != acct.cycle or timer.step <= acct.last_step
    ):
        why = "stale_timer"
    return why


def _promise_pause(out: Fired, acct: Account, policy: Policy) -> bool:
    """Defer the step until the day after a promised day (True). A promised day that has passed ends the
    hold and counts a broken promise (the account changed: it is written back), then the step goes on."""
    resume = acct.promise_resume_at()
    if resume is None or not policy.stops(StopCondition.PROMISE_TO_PAY):
        return False
    if resume > out.ctx.now:
        out.defer(resume, "promise_pause")
        out.log("deferred", "promise_pause", f"paused until {acct.promise_hold_until}", defer_until=resume)
        return True
    acct.hold, acct.status, acct.promise_hold_until = None, acct.source_status, None
    acct.broken_promises += 1
    out.step_done = True  # the account row changed: write it back
    out.decisions.append(
        decision(acct.account_id, out.ctx, "updated", "promise_broken", "promised date passed unpaid")
    )
    return False


def _manual_pause(out: Fired, acct: Account) -> bool:
    """Defer the step until a person's timed pause ends (True); a pause that has ended is cleared."""
    until = acct.timed_pause_end()
    if until is None:
        return False
    if until > out.ctx.now:
        out.defer(until, "manual_pause")
        note = f"paused by {acct.paused_by}" + (f" ({acct.pause_reason})" if acct.pause_reason else "")
        out.log("deferred", "override.pause", note, defer_until=until)
        return True
    acct.end_manual_pause()
    return False


def _approval_rule(
    acct: Account, timer: DueTimer, policy: Policy, send_now: SendNow | None, ctx: FoldContext
) -> str | None:
    """The approval rule that holds the step for a person, or None (approved already, by the timer or by
    a supervisor's send-now, or no rule applies)."""
    if timer.approved_by is not None or (send_now is not None and send_now.get("approved")):
        return None
    return policy.needs_approval(acct.balance_minor, acct.currency, acct.complex, ctx.rates)


def _campaign_pause(out: Fired, campaign: Campaign | None) -> bool:
    """Defer the step while the account's campaign is paused (True); an open-ended pause is looked at
    again daily."""
    now = out.ctx.now
    if campaign is None or campaign.paused_by is None:
        return False
    if campaign.pause_until is not None and campaign.pause_until <= now:
        return False
    cid = campaign.campaign_id
    until = campaign.pause_until or now + CAMPAIGN_PAUSE_RECHECK
    out.defer(until, f"campaign_pause:{cid}")
    note = f"campaign {cid} paused by {campaign.paused_by}" + (
        f" ({campaign.pause_reason})" if campaign.pause_reason else ""
    )
    out.log("deferred", "override.campaign_pause", note, defer_until=until)
    return True


def _gate_channels(
    out: Fired,
    acct: Account,
    step: PolicyStep,
    channels: Sequence[str],
    done: set[str],
    sent: Sent,
    gate_override: SendNow | None,
    rules: RuleSet,
) -> tuple[list[tuple[str, compliance.Decision]], list[datetime]]:
    """Each channel of the step not yet sent through the compliance gate, in order (`fallback`: up to the
    first that is sent, allowed or only later). Logs every suppression and deferral; returns the allowed
    channels with the gate's decision and the times the deferred ones may go."""
    now = out.ctx.now
    opted_out = {name for name, s in acct.channels.items() if s.opted_out}
    since = now - FREQUENCY_LOOKBACK
    fallback = step.channel_mode == "fallback"
    allowed: list[tuple[str, compliance.Decision]] = []
    defer_until: list[datetime] = []
    window = debtor_window(acct)  # the debtor's quiet times only narrow the legal window
    for ch in channels:
        if ch in done:
            if fallback:
                break  # already sent on one channel: the step is done
            continue
        block = channel_block(acct, ch)
        if block is not None and ch not in opted_out:
            out.log("suppressed", block[0], block[1], channel=ch)
            continue
        d = compliance.evaluate(
            now,
            channel=ch,
            timezone=acct.timezone,
            country=acct.country,
            region=acct.region,
            opted_out_channels=opted_out,
            do_not_contact=acct.do_not_contact,
            recent_sends=[t for t in sent.times.get(ch, ()) if t > since],
            rules=rules,
            window=window,
        )
        if not d.allowed and gate_override is not None and not d.rule_id.startswith(NEVER_OVERRIDDEN):
            d = compliance.Decision(
                allowed=True,
                rule_id="override.gate",
                reason=f"{d.rule_id} overridden by {gate_override['actor']}: {gate_override['reason']}",
            )
        if d.allowed:
            allowed.append((ch, d))
            if fallback:
                break
        elif d.defer_until is not None:
            defer_until.append(d.defer_until)
            out.log("deferred", d.rule_id, d.reason, channel=ch, defer_until=d.defer_until)
            if fallback:
                break  # the preferred channel is only later: wait for it rather than fall back
        else:
            out.log("suppressed", d.rule_id, d.reason, channel=ch)
    return allowed, defer_until


def _emit(
    out: Fired,
    acct: Account,
    policy: Policy,
    step: PolicyStep,
    channels: Sequence[str],
    allowed: list[tuple[str, compliance.Decision]],
    campaign_id: str | None,
    done: set[str],
    sent: Sent,
    band: str,
) -> None:
    """A notice (ledger row + `notice-due` event) and an `emitted` decision per allowed channel."""
    now, timer = out.ctx.now, out.timer
    version = timer.policy_version or policy.version
    tier = policy.wording_tier(timer.step, band)  # "final" only when people come next
    for ch, d in allowed:
        nid = notice_id(acct.account_id, policy.id, version, timer.step, timer.cycle, ch)
        rest = channels[channels.index(ch) + 1 :] if step.channel_mode == "fallback" else []
        fallback = [c for c in rest if channel_block(acct, c) is None and not acct.opted_out(c)]
        ev = _notice_due(acct, timer, policy.id, version, step, tier, ch, fallback, nid, campaign_id, now)
        ev = ev.model_copy(  # the debtor's language and quiet times travel to the dispatchers' gate
            update={"locale": out.ctx.locale(acct.country), "contact_window": debtor_window(acct)}
        )
        row = {
            "notice_id": nid,
            "account_id": acct.account_id,
            "policy_id": policy.id,
            "policy_version": version,
            "step": timer.step,
            "cycle": timer.cycle,
            "channel": ch,
            "tier": tier.value,
            "emitted_at": now,
            "campaign_id": campaign_id,
        }
        out.notices.append((row, ev))
        done.add(ch)
        sent.times.setdefault(ch, []).append(now)
        out.log("emitted", d.rule_id, f"{d.reason}; campaign {campaign_id}", channel=ch, notice_id=nid)


def _notice_due(
    acct: Account,
    timer: DueTimer,
    policy_id: str,
    version: int,
    step: PolicyStep,
    tier: Tier,
    channel: str,
    fallback: list[str],
    nid: str,
    campaign_id: str | None,
    now: datetime,
) -> NoticeDue:
    return NoticeDue(
        account_id=acct.account_id,
        notice_id=nid,
        policy_id=policy_id,
        policy_version=version,
        step=timer.step,
        cycle=timer.cycle,
        tier=tier,
        channel=channel,
        fallback_channels=fallback,
        fallback_to={c: acct.address(c) for c in fallback},
        template_id=step.template_id,
        campaign_id=campaign_id,
        priority=PRIORITY[tier],
        to=acct.address(channel),
        customer_name=acct.customer_name,
        balance_minor=acct.balance_minor,
        currency=acct.currency,
        days_past_due=acct.days_past_due,
        aging_bucket=acct.aging_bucket,
        timezone=acct.timezone,
        country=acct.country,
        region=acct.region,
        # due when the timer fires; a clock shifted ahead (demos, `arrears simulate`) must not make the
        # dispatchers hold the notice until that virtual moment
        due_at=min(now, datetime.now(UTC)),
        account_as_of=acct.as_of,
        issued_at=now,
    )


def _finish_step(out: Fired, acct: Account, defer_until: list[datetime], done: set[str]) -> None:
    """A deferred channel keeps the timer pending until the earliest allowed time; otherwise the step is
    done: fired if any channel went out, suppressed if none could."""
    if defer_until:
        out.defer(min(defer_until), "deferred")
        return
    out.state = "fired" if done else "suppressed"
    out.reason = None if done else "no channel allowed"
    acct.last_step, acct.last_step_at = out.timer.step, out.ctx.now
    if acct.send_now and acct.send_now["step"] <= out.timer.step:
        acct.send_now = None  # done (or overtaken)
    out.step_done = True
