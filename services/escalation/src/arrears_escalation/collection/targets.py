"""KPI targets of the collections module (seed 001: days-in-arrears coverage 100 %, automated notification
rate 85 %, collection recovery rate 40 %) as configuration, and each figure's status against its target.

Status (every target is a floor: higher is better):
- `met`: the figure is at or above the target;
- `near`: below it by at most `near` of the target (default 10 %: coverage 90-100 %, automated notifications
  76.5-85 %, recovery 36-40 %);
- `missed`: lower still;
- `no_data`: no figure (nothing to measure in the period).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["met", "near", "missed", "no_data"]

# The seed's three; ARREARS_ESCALATION_KPI_TARGETS adds or overrides others (e.g. promise_fulfilment).
SEED_TARGETS = {
    "days_in_arrears_coverage": 1.0,
    "automated_notification_rate": 0.85,
    "recovery_rate": 0.40,
}
KNOWN_METRICS = frozenset(
    {
        "collection_rate",
        "days_in_arrears_coverage",
        "promise_fulfilment",
        "promise_punctuality",
        "automated_notification_rate",
        "response_rate",
        "recovery_rate",
    }
)


class KpiTarget(BaseModel):
    metric: str
    target: float = Field(ge=0, le=1, description="The floor to reach (a ratio: 0.85 = 85 %)")
    near_at: float = Field(description="At or above this (and below the target) the figure is `near`")
    source: Literal["seed", "configured"] = "seed"

    def status(self, value: float | None) -> Status:
        if value is None:
            return "no_data"
        if value >= self.target - 1e-12:
            return "met"
        return "near" if value >= self.near_at - 1e-12 else "missed"


class KpiTargets(BaseModel):
    """The KPI targets in force, one per KPI that has one (configuration, a short fixed list)."""

    targets: list[KpiTarget]


def make_targets(
    coverage: float, automated: float, recovery: float, extra: str = "", near: float = 0.10
) -> list[KpiTarget]:
    """The targets in force: the seed's three (each configurable) plus `extra` (JSON {metric: ratio})."""
    values = {
        "days_in_arrears_coverage": coverage,
        "automated_notification_rate": automated,
        "recovery_rate": recovery,
    }
    more: dict[str, float] = json.loads(extra) if extra.strip() else {}
    unknown = set(more) - KNOWN_METRICS
    if unknown:
        raise ValueError(f"ARREARS_ESCALATION_KPI_TARGETS names unknown metrics: {sorted(unknown)}")
    values.update({k: float(v) for k, v in more.items()})
    return [
        KpiTarget(
            metric=m,
            target=t,
            near_at=round(t * (1 - near), 10),
            source="seed" if SEED_TARGETS.get(m) == t and m not in more else "configured",
        )
        for m, t in values.items()
    ]


def by_metric(targets: list[KpiTarget]) -> dict[str, KpiTarget]:
    return {t.metric: t for t in targets}
