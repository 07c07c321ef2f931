"""The feature pipeline is point-in-time correct: a row at or after the prediction day D changes no feature
of D (and the same row before D does, so the comparison can fail), labels look only after D, and the
simulator is deterministic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from arrears_scoring.features.labels import labels_at
from arrears_scoring.features.pipeline import (
    BASE_FEATURES,
    CANDIDATE_HOURS,
    features_at,
    logged_action,
    prepare,
)
from arrears_scoring.history.rows import INTENTS, OVERRIDE_ACTIONS, History
from arrears_scoring.simulate import simulate

END = 20_000
D = END - 20


@pytest.fixture(scope="module")
def history() -> History:
    return simulate(1500, 90, end_day=END, seed=5).history


def _append(h: History, acc: int, t: float) -> History:
    """`h` plus one row of every kind for account `acc` at time `t`: a payment (with its snapshot), a sent
    message, a reply with a promise, an opt-out override, a dispute, a promise taken by phone, a click."""
    s, m, r, p, o, c = h.snapshots, h.messages, h.replies, h.payments, h.overrides, h.clicks
    last = np.nonzero(s.acc == acc)[0][-1]

    def cat(a: np.ndarray, v: object) -> np.ndarray:
        return np.concatenate([a, np.asarray([v], dtype=a.dtype)])

    return replace(
        h,
        snapshots=replace(
            s,
            acc=cat(s.acc, acc),
            t=cat(s.t, t + 0.001),
            balance=cat(s.balance, s.balance[last] / 2),
            due_day=cat(s.due_day, s.due_day[last] - 30),
            open=cat(s.open, True),
            consent=np.vstack([s.consent, [[False, False, True]]]),
        ),
        messages=replace(
            m,
            acc=cat(m.acc, acc),
            t=cat(m.t, t),
            channel=cat(m.channel, 1),
            hour=cat(m.hour, 9),
            tier=cat(m.tier, 2),
        ),
        replies=replace(
            r,
            acc=cat(r.acc, acc),
            t=cat(r.t, t + 0.01),
            channel=cat(r.channel, 1),
            intent=cat(r.intent, INTENTS.index("promise_to_pay")),
            promise_day=cat(r.promise_day, np.floor(t) + 2),
        ),
        payments=replace(p, acc=cat(p.acc, acc), t=cat(p.t, t + 0.02), amount=cat(p.amount, 1000.0)),
        overrides=replace(
            o,
            acc=np.asarray([acc, acc, acc], dtype=np.int64),
            t=np.asarray([t, t, t]),
            action=np.asarray(
                [OVERRIDE_ACTIONS.index(a) for a in ("do_not_contact", "mark_dispute", "record_promise")]
            ),
            promise_day=np.asarray([np.nan, np.nan, np.floor(t) + 1]),
        ),
        clicks=replace(c, acc=cat(c.acc, acc), t=cat(c.t, t + 0.005)),
    )


def _frame_arrays(h: History, day: int) -> list[np.ndarray]:
    f = features_at(prepare(h), day)
    acts = [f.actions(np.full(h.n, ch), np.full(h.n, hr)) for ch in (0, 1) for hr in CANDIDATE_HOURS[::4]]
    return [f.base, f.open, f.consent, f.rate_channel, f.rate_band, f.rate_hour, f.balance, *acts]


def _an_open_account(h: History) -> int:
    f = features_at(prepare(h), D)
    return int(np.nonzero(f.open)[0][0])


@pytest.mark.parametrize("offset", [0.0, 0.3, 5.0])
def test_rows_at_or_after_d_change_no_feature_of_d(history: History, offset: float) -> None:
    acc = _an_open_account(history)
    before = _frame_arrays(history, D)
    after = _frame_arrays(_append(history, acc, D + offset), D)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_same_rows_before_d_do_change_the_features(history: History) -> None:
    """The control: the comparison above would catch a leak, since these rows matter when they are earlier."""
    acc = _an_open_account(history)
    before = features_at(prepare(history), D).base[acc]
    after = features_at(prepare(_append(history, acc, D - 3.0)), D).base[acc]
    changed = {BASE_FEATURES[j] for j in np.nonzero(before != after)[0]}
    assert {"payments_90d", "opted_out", "disputed", "messages_30d", "replies_total", "clicks_30d"} <= changed


def test_an_answer_after_d_does_not_count_for_a_message_before_d(history: History) -> None:
    """A message the day before D answered on D: its answer is in the future at D, so the response rates
    of D must not see it (the subtle leak of "answered within 2 days")."""
    acc = _an_open_account(history)
    h = _append(history, acc, D - 0.5)  # message, reply, click and payment all half a day before D
    moved = replace(
        h,
        replies=replace(h.replies, t=np.where(h.replies.t == D - 0.5 + 0.01, D + 0.2, h.replies.t)),
        payments=replace(h.payments, t=np.where(h.payments.t == D - 0.5 + 0.02, D + 0.2, h.payments.t)),
        clicks=replace(h.clicks, t=np.where(h.clicks.t == D - 0.5 + 0.005, D + 0.2, h.clicks.t)),
    )
    only_msg = replace(
        history,
        messages=replace(
            history.messages,
            acc=np.append(history.messages.acc, acc),
            t=np.append(history.messages.t, D - 0.5),
            channel=np.append(history.messages.channel, 1),
            hour=np.append(history.messages.hour, 9),
            tier=np.append(history.messages.tier, 2),
        ),
    )
    a = features_at(prepare(moved), D)
    b = features_at(prepare(only_msg), D)
    j = BASE_FEATURES.index("response_rate")
    assert a.base[acc, j] == b.base[acc, j]
    np.testing.assert_array_equal(a.rate_channel[acc], b.rate_channel[acc])
    answered = features_at(prepare(h), D)
    assert answered.base[acc, j] > b.base[acc, j]


def test_labels_and_the_logged_contact_look_only_after_d(history: History) -> None:
    acc = _an_open_account(history)
    prep = prepare(history)
    base = labels_at(prep, features_at(prep, D))
    later = prepare(_append(history, acc, D + 1.0))
    moved = labels_at(later, features_at(later, D))
    assert moved["pay14"][acc] == 1.0
    earlier = prepare(_append(history, acc, D - 40.0))  # long before D: no label of D may see it
    np.testing.assert_array_equal(labels_at(earlier, features_at(earlier, D))["pay14"], base["pay14"])
    # the logged contact is the first message of [D, D+7): the one added a day after D, unless the account
    # already had an earlier one in that week
    m = history.messages
    earlier = (m.acc == acc) & (m.t >= D) & (m.t < D + 1.0)
    ch, hr = logged_action(later, D)
    if earlier.any():
        first = np.argmin(np.where(earlier, m.t, np.inf))
        assert (ch[acc], hr[acc]) == (m.channel[first], m.hour[first])
    else:
        assert (ch[acc], hr[acc]) == (1, 9)
    before, _ = logged_action(prepare(_append(history, acc, D - 1.0)), D)
    np.testing.assert_array_equal(before, logged_action(prep, D)[0])  # a message before D is not the contact


def test_simulation_is_deterministic() -> None:
    a = simulate(300, 40, end_day=END, seed=9).history
    b = simulate(300, 40, end_day=END, seed=9).history
    c = simulate(300, 40, end_day=END, seed=10).history
    for x, y in (
        (a.messages.t, b.messages.t),
        (a.payments.amount, b.payments.amount),
        (a.replies.intent, b.replies.intent),
    ):
        np.testing.assert_array_equal(x, y)
    assert len(a.messages.t) != len(c.messages.t) or not np.array_equal(a.messages.t, c.messages.t)
