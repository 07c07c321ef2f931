"""A fitted linear model as plain numbers: standardisation, coefficients, intercept and link.

The three models are linear (logistic regression for the probabilities, ridge regression for the recovered
fraction), so what is stored is their parameters as JSON, not a pickle: loading a stored model never runs
code, whoever wrote the row (docs/scoring.md "Trust boundary"). Linear also makes reasons exact: a feature's
contribution to the log-odds is its coefficient × its standardised value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..history.rows import F

FORMAT = "linear-json-v1"


@dataclass
class LinearModel:
    kind: str
    features: tuple[str, ...]
    mean: F
    scale: F
    coef: F
    intercept: float
    link: Literal["logit", "identity"]

    def decision(self, x: F) -> F:
        return np.asarray(((x - self.mean) / self.scale) @ self.coef + self.intercept, dtype=np.float64)

    def predict(self, x: F) -> F:
        return self.apply_link(self.decision(x))

    def apply_link(self, z: F) -> F:
        if self.link == "logit":
            return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), dtype=np.float64)
        return np.clip(z, 0.0, 1.0)

    def contributions(self, x: F) -> F:
        """Per row and feature: how much it moved the decision value away from an average account's."""
        return np.asarray(((x - self.mean) / self.scale) * self.coef, dtype=np.float64)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "kind": self.kind,
                "features": list(self.features),
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "coef": self.coef.tolist(),
                "intercept": self.intercept,
                "link": self.link,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LinearModel:
        d: dict[str, Any] = json.loads(raw)
        if d.get("format") != FORMAT:
            raise ValueError(f"unknown model format {d.get('format')!r}")
        n = len(d["features"])
        mean, scale, coef = (np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        if any(a.shape != (n,) for a in (mean, scale, coef)) or d["link"] not in ("logit", "identity"):
            raise ValueError("malformed model parameters")
        return cls(d["kind"], tuple(d["features"]), mean, scale, coef, float(d["intercept"]), d["link"])
