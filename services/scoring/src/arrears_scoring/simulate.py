"""Simulated customers for the demo and the benchmark: hidden propensities, the same history rows the
pipeline reads, seeded and deterministic (same seed, same history, on any machine).

Each simulated customer has traits nobody sees: a willingness to pay, a responsiveness, a preferred channel,
a preferred time of day (one of four bands), a reaction to tone (firmer tiers help some and put others off),
and may go silent for good. Every day the contact policy decides who gets a message (every 7 days per
account, tier by days past due), on which channel and at which local hour; the customer answers with a
probability that depends on all of those, replies with an intent, clicks the link, promises (kept or not)
and pays (a willing customer's part payment is often followed by more, like a plan kept). Payments lower the
balance, and each change is a new account snapshot, as ingest would publish.

`run(...)` is one function for both uses: the history the models learn from (a varied logging policy:
channel and hour vary, as they do under contact windows and campaigns) and the benchmark's 60-day A/B run
(the same customers and the same random draws under two policies: common random numbers, so the difference
is the policy's and not the luck of the draw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .features.pipeline import NO_CONTACT, band_of
from .history.rows import (
    CHANNELS,
    INTENTS,
    Clicks,
    History,
    Messages,
    Overrides,
    Payments,
    Replies,
    Snapshots,
)

SMS, EMAIL = CHANNELS.index("sms"), CHANNELS.index("email")
CADENCE_D = 7
# reply intents of a customer who answers, and how often (an opt-out is added for tone-averse customers)
REPLY_INTENTS = ("promise_to_pay", "paid_claim", "callback_request", "hardship", "dispute", "other")
REPLY_P = np.array([0.38, 0.12, 0.1, 0.07, 0.05, 0.28])


@dataclass
class Population:
    """Hidden traits (never in the history) and the visible facts the history starts from."""

    n: int
    willingness: np.ndarray
    responsiveness: np.ndarray
    pref_channel: np.ndarray
    pref_band: np.ndarray
    tone_averse: np.ndarray  # firmer tiers put them off (and may make them opt out)
    arrival: np.ndarray  # day number the account enters the history
    due_day: np.ndarray
    balance0: np.ndarray  # minor units at arrival
    consent0: np.ndarray  # n × CHANNELS
    phase: np.ndarray  # day of the 7-day cadence its messages fall on


def population(n: int, start_day: int, arrival_days: int, seed: int) -> Population:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, n)
    arrival = start_day + rng.integers(0, max(1, arrival_days), n)
    dpd = np.clip(rng.gamma(2.0, 18.0, n) - 8.0 * w, 1, 150).astype(np.int64)
    consent = np.zeros((n, len(CHANNELS)), dtype=bool)
    consent[:, SMS] = rng.random(n) < 0.85
    consent[:, EMAIL] = rng.random(n) < 0.75
    consent[~consent.any(axis=1), EMAIL] = True
    return Population(
        n=n,
        willingness=w,
        responsiveness=rng.normal(0, 1, n),
        pref_channel=np.where(rng.random(n) < 0.55, SMS, EMAIL),
        pref_band=rng.integers(0, 4, n),
        tone_averse=rng.random(n) < 0.35,
        arrival=arrival,
        due_day=arrival - dpd,
        balance0=np.round(np.exp(rng.normal(10.6, 0.8, n))),  # ~ 400 in major units, long tail
        consent0=consent,
        phase=rng.integers(0, CADENCE_D, n),
    )


@dataclass
class State:
    """What changes as the simulation runs."""

    balance: np.ndarray
    consent: np.ndarray
    silent: np.ndarray
    messages: np.ndarray  # messages received so far (fatigue)
    pay_at: np.ndarray  # time of the next payment the customer decided on (inf: none)
    pay_frac: np.ndarray  # ... and the share of the balance it pays
    arrived: np.ndarray


def initial_state(pop: Population) -> State:
    return State(
        balance=pop.balance0.astype(np.float64).copy(),
        consent=pop.consent0.copy(),
        silent=np.zeros(pop.n, bool),
        messages=np.zeros(pop.n),
        pay_at=np.full(pop.n, np.inf),
        pay_frac=np.zeros(pop.n),
        arrived=np.zeros(pop.n, bool),
    )


def copy_state(s: State) -> State:
    return replace(s, **{k: getattr(s, k).copy() for k in s.__dataclass_fields__})


# policy(day, pop, state, contact_mask) -> (channel, hour) per account (channel NO_CONTACT: skip)
Policy = Callable[[int, Population, State, np.ndarray], tuple[np.ndarray, np.ndarray]]


def varied_policy(seed: int) -> Policy:
    """The history's logging policy: any consented channel, any hour of the contact window."""
    rng = np.random.default_rng(seed + 1)

    def policy(day: int, pop: Population, st: State, due: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = pop.n
        pick = rng.random(n)
        both = st.consent[:, SMS] & st.consent[:, EMAIL]
        ch = np.where(both, np.where(pick < 0.5, SMS, EMAIL), np.where(st.consent[:, SMS], SMS, EMAIL))
        ch = np.where(st.consent[:, SMS] | st.consent[:, EMAIL], ch, NO_CONTACT)
        return ch, rng.integers(8, 21, n)

    return policy


def fixed_policy(hour: int = 10) -> Policy:
    """The platform's fixed policy: SMS when there is consent, else email, at `hour` local time."""

    def policy(day: int, pop: Population, st: State, due: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ch = np.where(st.consent[:, SMS], SMS, np.where(st.consent[:, EMAIL], EMAIL, NO_CONTACT))
        return ch, np.full(pop.n, hour)

    return policy


def chosen_policy(channel: np.ndarray, hour: np.ndarray, fallback: Policy | None = None) -> Policy:
    """A per-account channel and hour chosen in advance (the model's), kept while its consent lasts."""
    fallback = fallback or fixed_policy()

    def policy(day: int, pop: Population, st: State, due: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fch, fhr = fallback(day, pop, st, due)
        ok = (channel >= 0) & st.consent[np.arange(pop.n), np.maximum(channel, 0)]
        return np.where(ok, channel, fch), np.where(ok, hour, fhr)

    return policy


@dataclass
class Rows:
    """Rows appended while running, turned into a History at the end."""

    snap: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    msg: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    rep: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    pay: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    clk: list[tuple[np.ndarray, ...]] = field(default_factory=list)


def _sig(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _cat(parts: list[tuple[np.ndarray, ...]], width: int) -> list[np.ndarray]:
    if not parts:
        return [np.zeros(0) for _ in range(width)]
    return [np.concatenate([p[i] for p in parts]) for i in range(width)]


def run(
    pop: Population,
    state: State,
    start_day: int,
    days: int,
    policy: Policy,
    seed: int,
    rows: Rows | None = None,
) -> tuple[State, Rows, float]:
    """Simulate `days` days from `start_day`; returns the state, the rows and the amount recovered."""
    rows = rows if rows is not None else Rows()
    n, idx = pop.n, np.arange(pop.n)
    recovered = 0.0
    log_bal = np.log(np.maximum(pop.balance0, 1.0))
    bal_z = (log_bal - log_bal.mean()) / (log_bal.std() or 1.0)
    for k in range(days):
        day = start_day + k
        rng = np.random.default_rng([seed, day])  # the same draws whatever the policy: common random numbers
        u = rng.random((n, 14))
        # arrivals: the account's first snapshot
        new = ~state.arrived & (pop.arrival <= day)
        if new.any():
            state.arrived |= new
            rows.snap.append(
                (idx[new], day + u[new, 0] * 0.2, state.balance[new], pop.due_day[new], state.consent[new])
            )
        active = state.arrived & (state.balance > 0)
        # payments decided earlier that fall today
        due_pay = active & (state.pay_at < day + 1)
        amount = np.where(due_pay, np.minimum(state.balance, np.ceil(state.balance * state.pay_frac)), 0.0)
        paid = due_pay & (amount > 0)
        if paid.any():
            t = np.maximum(state.pay_at[paid], day + 0.01)
            state.balance[paid] -= amount[paid]
            recovered += float(amount[paid].sum())
            rows.pay.append((idx[paid], t, amount[paid]))
            rows.snap.append(
                (idx[paid], t + 0.001, state.balance[paid], pop.due_day[paid], state.consent[paid])
            )
        state.pay_at[due_pay] = np.inf
        # a part payment by a willing customer is often the first of several (a plan they keep)
        plan = paid & (state.balance > 0) & (u[:, 12] < _sig(-0.5 + 1.2 * pop.willingness))
        state.pay_at[plan] = day + 10 + u[plan, 13] * 14
        state.pay_frac[plan] = 0.3 + 0.4 * u[plan, 13]
        # spontaneous decisions to pay (no message needed)
        dpd = day - pop.due_day
        spont = active & np.isinf(state.pay_at) & (u[:, 1] < _sig(-4.6 + 1.3 * pop.willingness - 0.006 * dpd))
        state.pay_at[spont] = day + 1 + u[spont, 2] * 3
        state.pay_frac[spont] = np.where(u[spont, 3] < 0.6, 1.0, 0.3 + 0.5 * u[spont, 4])
        # today's messages
        due = active & ((day - pop.phase) % CADENCE_D == 0)
        ch, hour = policy(day, pop, state, due)
        send = due & (ch >= 0)
        if not send.any():
            continue
        ch_ok = np.where(send, ch, 0)
        send &= state.consent[idx, ch_ok]
        tier = np.where(dpd < 30, 0, np.where(dpd < 60, 1, 2))
        t_msg = day + hour / 24.0
        rows.msg.append((idx[send], t_msg[send], ch[send], hour[send], tier[send]))
        state.messages[send] += 1
        tone = np.where(pop.tone_averse, -0.45, 0.25) * tier
        z = (
            -1.7
            + 0.9 * pop.responsiveness
            + 0.35 * pop.willingness
            + 1.3 * (ch == pop.pref_channel)
            + 1.1 * (band_of(hour) == pop.pref_band)
            + tone
            - 0.08 * state.messages
            - 3.0 * state.silent
        )
        respond = send & (u[:, 5] < _sig(z))
        # going silent for good: more likely for the unresponsive and, under firm tones, the tone-averse
        quit = (
            send & ~respond & (u[:, 6] < _sig(-4.0 - 0.8 * pop.responsiveness + 0.9 * pop.tone_averse * tier))
        )
        state.silent |= quit
        if not respond.any():
            continue
        t_ans = t_msg + 0.02 + u[:, 7] * 0.5
        click = respond & (u[:, 8] < 0.45)
        rows.clk.append((idx[click], t_ans[click] - 0.01))
        replied = respond & (u[:, 9] < 0.7)
        pick = np.searchsorted(np.cumsum(REPLY_P), u[:, 10] * REPLY_P.sum())
        intent = np.array([INTENTS.index(i) for i in REPLY_INTENTS])[np.minimum(pick, len(REPLY_INTENTS) - 1)]
        opt_out = replied & pop.tone_averse & (tier == 2) & (u[:, 11] < 0.25)
        intent = np.where(opt_out, INTENTS.index("opt_out"), intent)
        promise = replied & (intent == INTENTS.index("promise_to_pay"))
        promise_day = np.where(promise, day + 3 + np.floor(u[:, 4] * 11), np.nan)
        rows.rep.append((idx[replied], t_ans[replied], ch[replied], intent[replied], promise_day[replied]))
        state.consent[idx[opt_out], ch[opt_out]] = False
        # does the answer end in a payment? willing customers pay, promises are kept by the willing
        p_pay = _sig(0.2 + 1.8 * pop.willingness - 0.5 * bal_z + 0.5 * promise - 1.5 * opt_out)
        pays = respond & np.isinf(state.pay_at) & (u[:, 3] < p_pay)
        when = np.where(promise, promise_day + 0.5 - u[:, 2] * 2, t_ans + u[:, 2] * 5)
        state.pay_at[pays] = np.maximum(when[pays], day + 1)
        state.pay_frac[pays] = np.where(u[pays, 4] < 0.5, 1.0, 0.25 + 0.5 * u[pays, 1])
    return state, rows, recovered


def to_history(pop: Population, rows: Rows, currency: str = "USD") -> History:
    s_acc, s_t, s_bal, s_due, s_con = _cat(rows.snap, 5)
    m_acc, m_t, m_ch, m_hr, m_tier = _cat(rows.msg, 5)
    r_acc, r_t, r_ch, r_int, r_pd = _cat(rows.rep, 5)
    p_acc, p_t, p_amt = _cat(rows.pay, 3)
    c_acc, c_t = _cat(rows.clk, 2)
    consent = (
        s_con.reshape(-1, len(CHANNELS)).astype(bool) if len(s_acc) else np.zeros((0, len(CHANNELS)), bool)
    )
    i64 = np.int64
    return History(
        accounts=[f"SIM{i:06d}" for i in range(pop.n)],
        currency=[currency] * pop.n,
        snapshots=Snapshots(
            s_acc.astype(i64), s_t.astype(float), s_bal.astype(float), s_due.astype(i64), s_bal > 0, consent
        ),
        messages=Messages(
            m_acc.astype(i64), m_t.astype(float), m_ch.astype(i64), m_hr.astype(i64), m_tier.astype(i64)
        ),
        replies=Replies(
            r_acc.astype(i64), r_t.astype(float), r_ch.astype(i64), r_int.astype(i64), r_pd.astype(float)
        ),
        payments=Payments(p_acc.astype(i64), p_t.astype(float), p_amt.astype(float)),
        overrides=Overrides(),
        clicks=Clicks(c_acc.astype(i64), c_t.astype(float)),
    )


@dataclass
class Simulation:
    pop: Population
    state: State
    history: History
    start_day: int
    end_day: int  # first day after the history
    seed: int


def simulate(n: int, days: int = 120, *, end_day: int, seed: int = 20) -> Simulation:
    """`n` customers over the `days` days before `end_day`, under the varied logging policy."""
    start = end_day - days
    pop = population(n, start, int(days * 0.6), seed)
    state, rows, _ = run(pop, initial_state(pop), start, days, varied_policy(seed), seed)
    return Simulation(pop, state, to_history(pop, rows), start, end_day, seed)
