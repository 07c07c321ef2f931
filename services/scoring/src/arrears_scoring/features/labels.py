"""What happened after D: the outcomes the models learn (used for training and evaluation only, never as
inputs). Each label needs its whole horizon to have passed: `horizon(kind)` days after D."""

from __future__ import annotations

import numpy as np

from ..history.rows import INTENTS, F
from .pipeline import PROMISE_GRACE_D, Frame, Prepared, _count

PAY_DAYS = 14
DROPOUT_DAYS = 14
RECOVERY_DAYS = 60
KINDS: tuple[str, ...] = ("pay14", "dropout", "recovery")
HORIZON: dict[str, int] = {"pay14": PAY_DAYS, "dropout": DROPOUT_DAYS, "recovery": RECOVERY_DAYS}


def labels_at(prep: Prepared, frame: Frame) -> dict[str, F]:
    """Per account: `pay14` (a payment within 14 days of D), `dropout` (had answered a message before D and
    answered none of those of the next 14 days, or broke a promise, or opted out, in that time) and `recovery` (share of D's
    balance paid within 60 days, 0..1)."""
    h, n, D = prep.h, prep.h.n, float(frame.day)
    p, m, r, c = h.payments, h.messages, h.replies, h.clicks

    def within(t: F, days: int) -> np.ndarray:
        return (t >= D) & (t < D + days)

    pay14 = _count(p.acc, within(p.t, PAY_DAYS), n) > 0
    msgs = _count(m.acc, within(m.t, DROPOUT_DAYS), n)
    answers = (
        _count(r.acc, within(r.t, DROPOUT_DAYS), n)
        + _count(c.acc, within(c.t, DROPOUT_DAYS), n)
        + _count(p.acc, within(p.t, DROPOUT_DAYS), n)
    )
    deadline = prep.promise_due + PROMISE_GRACE_D
    broke = (
        (prep.promise_made_t < D + DROPOUT_DAYS)
        & within(deadline, DROPOUT_DAYS)
        & ~(prep.promise_paid_t <= deadline)
    )
    opt_out = within(r.t, DROPOUT_DAYS) & (r.intent == INTENTS.index("opt_out"))
    engaged = _count(m.acc, prep.msg_answered_t < D, n) > 0  # answered a message before D
    dropout = (engaged & (msgs > 0) & (answers == 0)) | (_count(prep.promise_acc, broke, n) > 0)
    dropout |= _count(r.acc, opt_out, n) > 0
    paid = _count(p.acc, within(p.t, RECOVERY_DAYS), n, p.amount)
    recovery = np.clip(np.where(frame.balance > 0, paid / np.maximum(frame.balance, 1.0), 0.0), 0.0, 1.0)
    return {
        "pay14": pay14.astype(np.float64),
        "dropout": dropout.astype(np.float64),
        "recovery": recovery,
    }
