"""Features of every account at a prediction day D, from the history rows before D only.

Point-in-time correctness is structural: every feature is computed from rows with `t < D` (a row's own time),
and a message counts as "answered" only if its answer (a reply, a link click or a payment within
`RESPONSE_WINDOW_D` days) also came before D. Nothing here reads a row at or after D, so an event after D
cannot change a feature of D (tests/scoring/test_features.py adds such events and compares).

Two kinds of columns (docs/scoring.md lists them all):

- **base features**: what the account's history says at D (debt, payments, messages, replies, promises,
  consents);
- **action features**: a contact the models are asked about (channel × local hour), with the account's own
  past response on that channel and at that hour. Training uses the contact that was actually made in the
  week after D (the "treatment"; the outcome is not an input), on the rows that had one; scoring tries every
  candidate the account can be reached on and keeps the one with the highest P(payment within 14 days).

No protected attribute is an input: no name, address, country, region, time zone, language, age or sex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..history.rows import CHANNELS, INTENTS, OVERRIDE_ACTIONS, B, F, History, I

RESPONSE_WINDOW_D = 2.0  # a reply, click or payment this soon after a message answers it
PROMISE_GRACE_D = 3.0  # a promise is broken when no payment came this long after its date
CANDIDATE_HOURS: tuple[int, ...] = tuple(range(8, 21))  # local hours the scoring job proposes
NO_CONTACT = -1

BASE_FEATURES: tuple[str, ...] = (
    "days_past_due",
    "log_balance",
    "paid_share",
    "balance_drop_30d",
    "payments_90d",
    "days_since_payment",
    "messages_30d",
    "messages_total",
    "replies_total",
    "response_rate",
    "answered_7d",
    "days_since_answer",
    "days_since_reply",
    "promises_kept",
    "promises_broken",
    "promise_open",
    "promise_due_soon",
    "days_known",
    "disputed",
    "hardship",
    "callback_30d",
    "paid_claim_30d",
    "opted_out",
    "consents",
    "clicks_30d",
    "max_tier",
    "manual_contacts",
)
ACTION_FEATURES: tuple[str, ...] = (
    "act_none",
    "act_sms",
    "act_email",
    "act_whatsapp",
    "act_morning",
    "act_midday",
    "act_afternoon",
    "act_evening",
    "act_channel_rate",
    "act_band_rate",
    "act_hour_rate",
)
FEATURES: tuple[str, ...] = BASE_FEATURES + ACTION_FEATURES
N_BANDS = 4


def band_of(hour: I | int) -> I:
    """Local hour -> band: morning (<11), midday (11-13), afternoon (14-16), evening (17+)."""
    h = np.asarray(hour)
    return np.where(h < 11, 0, np.where(h < 14, 1, np.where(h < 17, 2, 3))).astype(np.int64)


def _key(acc: I, t: F) -> F:
    return acc.astype(np.float64) * 1e6 + t


def _next_after(src_acc: I, src_t: F, ev_acc: I, ev_t: F) -> F:
    """For each source row, the time of the first event of the same account strictly after it (inf if none)."""
    if len(src_t) == 0:
        return np.zeros(0)
    if len(ev_t) == 0:
        return np.full(len(src_t), np.inf)
    keys = _key(ev_acc, ev_t)
    order = np.argsort(keys, kind="stable")
    keys, acc_s, t_s = keys[order], ev_acc[order], ev_t[order]
    pos = np.searchsorted(keys, _key(src_acc, src_t), side="right")
    ok = pos < len(keys)
    out = np.full(len(src_t), np.inf)
    p = np.minimum(pos, len(keys) - 1)
    same = ok & (acc_s[p] == src_acc)
    out[same] = t_s[p][same]
    return out


@dataclass
class Prepared:
    """Per-row facts derived once from a History (each uses only rows up to that row's own answer time, which
    `features_at` compares with D): when each message was answered, each promise's first payment after it."""

    h: History
    msg_answered_t: F  # time of the answer to each message (inf: none within RESPONSE_WINDOW_D)
    promise_acc: I
    promise_made_t: F
    promise_due: F  # day number of the promised date
    promise_paid_t: F  # first payment after the promise was made (inf if none)
    snap_order: I  # snapshots sorted by (account, t)


def prepare(h: History) -> Prepared:
    m, r, p, c, o = h.messages, h.replies, h.payments, h.clicks, h.overrides
    ans_acc = np.concatenate([r.acc, c.acc, p.acc])
    ans_t = np.concatenate([r.t, c.t, p.t])
    nxt = _next_after(m.acc, m.t, ans_acc, ans_t)
    answered = np.where(nxt - m.t <= RESPONSE_WINDOW_D, nxt, np.inf)
    pr = (r.intent == INTENTS.index("promise_to_pay")) & ~np.isnan(r.promise_day)
    po = (o.action == OVERRIDE_ACTIONS.index("record_promise")) & ~np.isnan(o.promise_day)
    p_acc = np.concatenate([r.acc[pr], o.acc[po]])
    p_t = np.concatenate([r.t[pr], o.t[po]])
    p_due = np.concatenate([r.promise_day[pr], o.promise_day[po]])
    paid = _next_after(p_acc, p_t, p.acc, p.t)
    s = h.snapshots
    order = np.lexsort((s.t, s.acc)).astype(np.int64)
    return Prepared(h, answered, p_acc, p_t, p_due, paid, order)


def _count(acc: I, mask: B, n: int, weights: F | None = None) -> F:
    return np.bincount(acc[mask], weights=None if weights is None else weights[mask], minlength=n).astype(
        np.float64
    )


def _last(acc: I, t: F, mask: B, n: int) -> F:
    """Latest `t` per account among masked rows (-inf if none)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, acc[mask], t[mask])
    return out


def _state_at(prep: Prepared, at: float) -> tuple[I, B]:
    """Index of each account's latest snapshot before `at` (and whether it has one)."""
    s = prep.h.snapshots
    order = prep.snap_order
    acc_s, t_s = s.acc[order], s.t[order]
    before = t_s < at
    n = prep.h.n
    idx = np.full(n, -1, dtype=np.int64)
    rows = np.nonzero(before)[0]
    # rows are sorted by (account, t): the last one written per account wins
    idx[acc_s[rows]] = order[rows]
    return idx, idx >= 0


def _rate(hit: F, tries: F, prior: float = 0.15, weight: float = 2.0) -> F:
    return (hit + prior * weight) / (tries + weight)


def _shrunk(hit: F, tries: F, overall: F, weight: float = 2.0) -> F:
    """A channel's or a time band's answer rate, shrunk towards the account's overall rate: an untried
    channel looks like the account's average, not like a bad one."""
    return (hit + overall * weight) / (tries + weight)


@dataclass
class Frame:
    """Features of every account at D: `base` (n × BASE_FEATURES), and what action features need."""

    day: float  # the prediction moment (a day number; the daily run uses its run time)
    base: F
    known: B  # the account has a snapshot before D
    open: B  # ... and it is open with something to pay
    balance: F
    consent: B  # n × CHANNELS (latest snapshot, minus opt-outs)
    rate_channel: F  # n × CHANNELS
    rate_band: F  # n × N_BANDS
    rate_hour: F  # n × 24

    def actions(self, channel: I, hour: I) -> F:
        """Action features for one proposed contact per account (`channel` NO_CONTACT: none)."""
        n = len(channel)
        out = np.zeros((n, len(ACTION_FEATURES)))
        rows = np.arange(n)
        none = channel == NO_CONTACT
        ch = np.where(none, 0, channel)
        hr = np.clip(np.where(none, 12, hour), 0, 23)
        bd = band_of(hr)
        out[:, 0] = none
        out[rows, 1 + ch] = ~none
        out[rows, 4 + bd] = ~none
        out[:, 8] = np.where(none, 0.0, self.rate_channel[rows, ch])
        out[:, 9] = np.where(none, 0.0, self.rate_band[rows, bd])
        out[:, 10] = np.where(none, 0.0, self.rate_hour[rows, hr])
        return out

    def matrix(self, channel: I, hour: I) -> F:
        return np.hstack([self.base, self.actions(channel, hour)])


def features_at(prep: Prepared, day: float) -> Frame:
    """Every account's features at the moment `day` (a day number: an integer is the start of that UTC day),
    from rows strictly before it."""
    h, n, D = prep.h, prep.h.n, float(day)
    s, m, r, p, o, c = h.snapshots, h.messages, h.replies, h.payments, h.overrides, h.clicks

    idx, known = _state_at(prep, D)
    safe = np.where(known, idx, 0)
    balance = np.where(known, s.balance[safe], 0.0)
    due = np.where(known, s.due_day[safe], day)
    is_open = known & s.open[safe] & (balance > 0)
    consent = np.where(known[:, None], s.consent[safe], False)

    idx30, known30 = _state_at(prep, D - 30)
    bal30 = np.where(known30, s.balance[np.where(known30, idx30, 0)], balance)
    seen = s.t < D
    first_seen = np.full(n, np.inf)
    np.minimum.at(first_seen, s.acc[seen], s.t[seen])
    first_seen = np.where(np.isfinite(first_seen), first_seen, D)
    max_bal = np.maximum(np.zeros(n), balance)
    np.maximum.at(max_bal, s.acc[seen], s.balance[seen])

    pay_before = p.t < D
    last_pay = _last(p.acc, p.t, pay_before, n)
    m_before = m.t < D
    m30 = m_before & (m.t >= D - 30)
    answered = m_before & (prep.msg_answered_t < D)
    last_answer = _last(m.acc, prep.msg_answered_t, answered, n)
    r_before = r.t < D
    last_reply = _last(r.acc, r.t, r_before, n)
    r30 = r_before & (r.t >= D - 30)

    def intent(name: str, mask: B) -> B:
        return _count(r.acc, mask & (r.intent == INTENTS.index(name)), n) > 0

    def action(name: str) -> B:
        return _count(o.acc, (o.t < D) & (o.action == OVERRIDE_ACTIONS.index(name)), n) > 0

    made = prep.promise_made_t < D
    deadline = prep.promise_due + PROMISE_GRACE_D
    kept = made & (prep.promise_paid_t <= deadline) & (prep.promise_paid_t < D)
    broken = made & (deadline < D) & ~(prep.promise_paid_t <= deadline)
    open_promise = made & ~kept & (deadline >= D)

    opted_out = intent("opt_out", r_before) | action("do_not_contact")
    consent = consent & ~opted_out[:, None]
    tiers = np.zeros(n)
    np.maximum.at(tiers, m.acc[m_before], m.tier[m_before] + 1.0)

    msgs_total = _count(m.acc, m_before, n)
    hits_total = _count(m.acc, answered, n)
    overall = _rate(hits_total, msgs_total)
    rate_channel = np.zeros((n, len(CHANNELS)))
    for k in range(len(CHANNELS)):
        sel = m.channel == k
        rate_channel[:, k] = _shrunk(
            _count(m.acc, answered & sel, n), _count(m.acc, m_before & sel, n), overall
        )
    bands = band_of(m.hour)
    rate_band = np.zeros((n, N_BANDS))
    for k in range(N_BANDS):
        sel = bands == k
        rate_band[:, k] = _shrunk(_count(m.acc, answered & sel, n), _count(m.acc, m_before & sel, n), overall)
    rate_hour = np.zeros((n, 24))
    for hr in range(24):
        sel = m.hour == hr
        tries = _count(m.acc, m_before & sel, n)
        if tries.any():
            rate_hour[:, hr] = (_count(m.acc, answered & sel, n) + rate_band[:, int(band_of(hr))] * 2.0) / (
                tries + 2.0
            )
        else:
            rate_hour[:, hr] = rate_band[:, int(band_of(hr))]

    base = np.column_stack(
        [
            np.clip(D - due, 0, 365),
            np.log1p(np.maximum(balance, 0) / 100.0),
            np.where(max_bal > 0, 1.0 - balance / np.maximum(max_bal, 1e-9), 0.0),
            np.clip(np.where(bal30 > 0, (bal30 - balance) / np.maximum(bal30, 1e-9), 0.0), 0, 1),
            _count(p.acc, pay_before & (p.t >= D - 90), n),
            np.minimum(D - last_pay, 365.0),
            np.log1p(_count(m.acc, m30, n)),
            np.log1p(msgs_total),
            np.log1p(_count(r.acc, r_before, n)),
            overall,
            _count(m.acc, answered & (prep.msg_answered_t >= D - 7), n),
            np.minimum(D - last_answer, 365.0),
            np.minimum(D - last_reply, 365.0),
            _count(prep.promise_acc, kept, n),
            _count(prep.promise_acc, broken, n),
            _count(prep.promise_acc, open_promise, n) > 0,
            _count(prep.promise_acc, open_promise & (prep.promise_due < D + 14), n) > 0,
            np.minimum(D - first_seen, 365.0),
            intent("dispute", r_before) | action("mark_dispute"),
            intent("hardship", r_before),
            intent("callback_request", r30),
            intent("paid_claim", r30),
            opted_out,
            consent.sum(axis=1),
            np.log1p(_count(c.acc, (c.t < D) & (c.t >= D - 30), n)),
            tiers,
            _count(o.acc, (o.t < D) & (o.action == OVERRIDE_ACTIONS.index("record_contact")), n),
        ]
    ).astype(np.float64)
    return Frame(day, base, known, is_open, balance, consent, rate_channel, rate_band, rate_hour)


def logged_action(prep: Prepared, day: int, days: float = 7.0) -> tuple[I, I]:
    """The first dunning message actually sent in [day, day + days): its channel and local hour per account
    (NO_CONTACT if none). The contact is the treatment the outcome is learnt under, not a feature of D."""
    m, n = prep.h.messages, prep.h.n
    ch = np.full(n, NO_CONTACT, dtype=np.int64)
    hr = np.full(n, 12, dtype=np.int64)
    sel = np.nonzero((m.t >= day) & (m.t < day + days))[0]
    if len(sel):
        order = sel[np.lexsort((-m.t[sel], m.acc[sel]))]  # per account, latest first ...
        ch[m.acc[order]] = m.channel[order]  # ... so the earliest is written last and wins
        hr[m.acc[order]] = m.hour[order]
    return ch, hr
