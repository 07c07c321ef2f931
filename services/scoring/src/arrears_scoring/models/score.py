"""Scoring a Frame with the active models: the best contact, the three predictions there, the risk score
and its reasons. Used alike by the daily job, the API's training check and the benchmark.

The best contact is the argmax of P(payment within 14 days) over every channel the account can be reached
on (consent, no opt-out) × every local hour of `CANDIDATE_HOURS`; an account reachable on no channel gets
none (and its prediction without a contact). This only *proposes*: the segmenter's compliance gate still
decides whether and when a message may go (contact hours, caps, holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.pipeline import BASE_FEATURES, CANDIDATE_HOURS, NO_CONTACT, Frame
from ..history.rows import CHANNELS, F, I
from .linear import LinearModel
from .reasons import top_reasons


@dataclass
class Scores:
    rows: I  # account indexes scored (open accounts)
    channel: I  # best channel code (NO_CONTACT: none)
    hour: I
    p_pay: F
    dropout: F
    recovery: F
    risk: I
    balance: F  # minor units at the prediction day
    reasons: list[list[tuple[str, str, float]]]


def band(risk: int) -> str:
    return "low" if risk <= 33 else "medium" if risk <= 66 else "high"


def best_contact(pay: LinearModel, frame: Frame, rows: I) -> tuple[I, I, F]:
    """(channel, hour, P(pay)) of the best candidate contact for each of `rows`. The model is linear, so the
    base features' share of the decision value is computed once and each candidate adds its actions' share."""
    n, nb = len(rows), len(BASE_FEATURES)
    sub = _subframe(frame, rows)
    mean_a, scale_a, coef_a = pay.mean[nb:], pay.scale[nb:], pay.coef[nb:]
    base_z = ((sub.base - pay.mean[:nb]) / pay.scale[:nb]) @ pay.coef[:nb] + pay.intercept

    def z_of(channel: I, hour: I) -> F:
        return np.asarray(base_z + ((sub.actions(channel, hour) - mean_a) / scale_a) @ coef_a)

    best_ch = np.full(n, NO_CONTACT, dtype=np.int64)
    best_hr = np.full(n, 12, dtype=np.int64)
    best_z = z_of(best_ch, best_hr)
    reachable = np.zeros(n, bool)
    for c in range(len(CHANNELS)):
        ok = sub.consent[:, c]
        if not ok.any():
            continue
        for h in CANDIDATE_HOURS:
            z = z_of(np.full(n, c), np.full(n, h))
            better = ok & ((z > best_z) | ~reachable)
            best_z = np.where(better, z, best_z)
            best_ch = np.where(better, c, best_ch)
            best_hr = np.where(better, h, best_hr)
            reachable |= ok
    return best_ch, best_hr, pay.apply_link(best_z)


def _subframe(frame: Frame, rows: I) -> Frame:
    return Frame(
        frame.day,
        frame.base[rows],
        frame.known[rows],
        frame.open[rows],
        frame.balance[rows],
        frame.consent[rows],
        frame.rate_channel[rows],
        frame.rate_band[rows],
        frame.rate_hour[rows],
    )


def score(models: dict[str, LinearModel], frame: Frame, reasons: int = 3) -> Scores:
    rows = np.nonzero(frame.open)[0]
    ch, hr, p = best_contact(models["pay14"], frame, rows)
    x = _subframe(frame, rows).matrix(ch, hr)
    dropout = models["dropout"].predict(x)
    recovery = models["recovery"].predict(x)
    risk = np.clip(np.rint(100 * (1 - p)), 0, 100).astype(np.int64)
    why = top_reasons(models["pay14"].contributions(x), x, p, reasons) if reasons else [[] for _ in rows]
    return Scores(rows, ch, hr, p, dropout, recovery, risk, frame.balance[rows], why)
