"""Training: a dataset of (account, prediction day) rows from a History, a time-based split, fitting,
metrics, and the activation rule.

Rows: every `step` days D, every account open at D with something to pay; inputs are D's features and the
contact actually made in the week after D; outputs are the labels of `features/labels.py`. Split by time,
per model: the latest prediction days whose outcome is fully known form the test window; training uses only
days whose whole outcome horizon ended before the test window starts, so no training label overlaps it. The
one exception: when the history is too short for that gap (the 60-day recovery model needs about twice its
horizon), training takes the days before the test window and the overlap is stored with the metrics
(`label_overlap_days`), so the model list shows how optimistic that window is.

A new model is activated only if it beats the active one on that latest window (AUC for the probabilities,
mean absolute error for the recovered fraction), both scored on the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..features.labels import HORIZON, KINDS, labels_at
from ..features.pipeline import FEATURES, NO_CONTACT, Prepared, features_at, logged_action
from ..history.rows import F
from .linear import LinearModel

log = logging.getLogger(__name__)
CLASSIFIERS = ("pay14", "dropout")


@dataclass
class Dataset:
    x: F
    y: dict[str, F]
    day: np.ndarray  # prediction day of each row

    def rows(self, mask: np.ndarray) -> Dataset:
        return Dataset(self.x[mask], {k: v[mask] for k, v in self.y.items()}, self.day[mask])


def prediction_days(prep: Prepared, step: int = 7, warmup: int = 14) -> list[int]:
    """Prediction days from `warmup` days after the history's start to its end, every `step` days."""
    start, end = int(np.floor(prep.h.start())) + warmup, int(np.floor(prep.h.end()))
    return list(range(start, end + 1, step))


def build_dataset(prep: Prepared, days: list[int]) -> Dataset:
    xs, ys, ds = [], {k: [] for k in KINDS}, []  # type: ignore[var-annotated]
    for d in days:
        frame = features_at(prep, d)
        ch, hr = logged_action(prep, d)
        # only rows whose week had a contact: a week without one is mostly a week whose payment came first
        # (a paid account gets no more notices), so "no contact" would teach the outcome, not the action
        rows = frame.open & (ch != NO_CONTACT)
        xs.append(frame.matrix(ch, hr)[rows])
        for k, v in labels_at(prep, frame).items():
            ys[k].append(v[rows])
        ds.append(np.full(int(rows.sum()), d))
    if not xs:
        return Dataset(np.zeros((0, len(FEATURES))), {k: np.zeros(0) for k in KINDS}, np.zeros(0))
    return Dataset(np.vstack(xs), {k: np.concatenate(v) for k, v in ys.items()}, np.concatenate(ds))


@dataclass
class Window:
    train_from: int
    train_to: int  # last prediction day used for training
    test_from: int
    test_to: int
    label_overlap_days: int = 0  # days of the test window the last training label's outcome reaches into


def split(
    data: Dataset, kind: str, end_day: int, test_share: float = 0.25
) -> tuple[Window, np.ndarray, np.ndarray]:
    """(window, train mask, test mask) for `kind`: only days whose horizon has passed by `end_day`."""
    h = HORIZON[kind]
    days = sorted({int(d) for d in data.day if d + h <= end_day})
    if len(days) < 2:
        raise InsufficientHistory(f"{kind}: {len(days)} prediction day(s) with a known outcome; need 2")
    n_test = max(1, int(round(len(days) * test_share)))
    test_days = days[-n_test:]
    train_days = [d for d in days if d + h <= test_days[0]]
    overlap = 0
    if not train_days:
        # a horizon longer than the history allows a clean gap (the 60-day recovery model on a few months):
        # train on the earlier days anyway and say how far their outcomes reach into the test window
        train_days = days[:-n_test]
        overlap = train_days[-1] + h - test_days[0]
    train = np.isin(data.day, train_days)
    test = np.isin(data.day, test_days)
    return Window(train_days[0], train_days[-1], test_days[0], test_days[-1], overlap), train, test


class InsufficientHistory(ValueError):
    """Not enough labelled history to train (and so nothing is stored or activated)."""


def calibration(p: F, y: F, bins: int = 10) -> list[dict[str, float]]:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append(
                {
                    "from": float(edges[b]),
                    "to": float(edges[b + 1]),
                    "n": int(sel.sum()),
                    "predicted": float(p[sel].mean()),
                    "observed": float(y[sel].mean()),
                }
            )
    return out


def evaluate(model: LinearModel, x: F, y: F) -> dict[str, Any]:
    # scikit-learn is imported where it is used: it takes seconds to import, and a replica that only scores
    # (the linear models are plain numbers) never needs it
    from sklearn.metrics import brier_score_loss, mean_absolute_error, r2_score, roc_auc_score

    pred = model.predict(x)
    if model.link == "logit":
        auc = float(roc_auc_score(y, pred)) if 0 < y.sum() < len(y) else None
        return {
            "auc": auc,
            "brier": float(brier_score_loss(y, pred)),
            "base_rate": float(y.mean()) if len(y) else None,
            "calibration": calibration(pred, y),
            "n": int(len(y)),
        }
    return {
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if len(y) > 1 else None,
        "mean": float(y.mean()) if len(y) else None,
        "n": int(len(y)),
    }


def better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Does `new` beat `old` (both evaluated on the same window)?"""
    if "auc" in new:
        return (new.get("auc") or 0.0) > (old.get("auc") or 0.0)
    return float(new["mae"]) < float(old["mae"])


def fit(kind: str, x: F, y: F, seed: int = 7, max_rows: int = 400_000) -> LinearModel:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    if len(y) > max_rows:
        keep = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        x, y = x[keep], y[keep]
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 1e-12, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    if kind in CLASSIFIERS:
        if y.min() == y.max():
            raise InsufficientHistory(f"{kind}: every training row has the same outcome")
        lr = LogisticRegression(C=1.0, max_iter=300).fit(z, y)
        coef, intercept, link = lr.coef_[0], float(lr.intercept_[0]), "logit"
    else:
        rr = Ridge(alpha=1.0).fit(z, y)
        coef, intercept, link = rr.coef_, float(rr.intercept_), "identity"
    return LinearModel(kind, FEATURES, scaler.mean_.copy(), scale, np.asarray(coef, float), intercept, link)  # type: ignore[arg-type]


@dataclass
class Trained:
    kind: str
    model: LinearModel
    window: Window
    metrics: dict[str, Any]
    rows: int
    test_x: F = field(repr=False)
    test_y: F = field(repr=False)


def train_all(prep: Prepared, *, end_day: int | None = None, step: int = 7, seed: int = 7) -> list[Trained]:
    """Fit the three models on `prep`'s history up to `end_day` (default: its end)."""
    end = int(np.floor(prep.h.end())) if end_day is None else end_day
    data = build_dataset(prep, [d for d in prediction_days(prep, step) if d <= end])
    out = []
    for kind in KINDS:
        window, train, test = split(data, kind, end)
        tr, te = data.rows(train), data.rows(test)
        if len(tr.day) < 50 or len(te.day) < 20:
            raise InsufficientHistory(f"{kind}: {len(tr.day)} training and {len(te.day)} test rows")
        model = fit(kind, tr.x, tr.y[kind], seed)
        metrics = evaluate(model, te.x, te.y[kind])
        metrics["train_rows"] = int(len(tr.day))
        metrics["label_overlap_days"] = window.label_overlap_days
        out.append(Trained(kind, model, window, metrics, int(len(tr.day)), te.x, te.y[kind]))
        log.info(
            "model trained",
            extra={"kind": kind, "metrics": {k: metrics.get(k) for k in ("auc", "brier", "mae")}},
        )
    return out
