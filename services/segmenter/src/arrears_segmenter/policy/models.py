"""Dunning policy as versioned data (YAML -> pydantic)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from arrears_shared.events import Channel, Tier
from pydantic import BaseModel, ConfigDict, Field, model_validator


class PolicyStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=1)
    tier: Tier
    min_days_past_due: int = Field(ge=0)
    min_interval_days: int = Field(0, ge=0, description="Days since the previous step was sent")
    channels: list[Channel] = Field(min_length=1, description="Sent on every allowed channel, in order")
    template_id: str


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    version: int = Field(ge=1)
    steps: list[PolicyStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        nums = [s.step for s in self.steps]
        if nums != list(range(1, len(nums) + 1)):
            raise ValueError("steps must be numbered 1..n in order")
        dpd = [s.min_days_past_due for s in self.steps]
        if dpd != sorted(dpd):
            raise ValueError("min_days_past_due must not decrease along the steps")
        return self

    def get(self, step: int) -> PolicyStep:
        return self.steps[step - 1]

    @property
    def last_step(self) -> int:
        return len(self.steps)


def load_policy(path: str | Path | None = None) -> Policy:
    if path is None:
        text = (resources.files("arrears_segmenter") / "policies" / "default.yaml").read_text()
    else:
        text = Path(path).read_text()
    return Policy.model_validate(yaml.safe_load(text))
