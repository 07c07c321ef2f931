"""The next-steps list: each account's pending step, for people working by hand (no personal data)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

Hold = Literal["pause", "promise", "dispute", "approval", "campaign_pause"]


class NextStep(BaseModel):
    account_id: str
    step: int
    cycle: int
    tier: str | None = Field(
        description="The step's tier in the policy it was planned with (null: not in it)"
    )
    channels: list[str] = Field(description="The step's channels, in the order they would be tried")
    due_at: datetime = Field(description="When the step falls due (a hold below may move it)")
    state: Literal["pending", "held"] = Field(description="held: waiting for a person's approval")
    reason: str | None = Field(
        description="Rule id of the timer's last deferral (quiet hours, a cap), if any"
    )
    policy_id: str | None
    policy_version: int | None
    hold: Hold | None = Field(description="What holds the account, if anything")
    hold_until: datetime | None = Field(description="End of a timed pause (null: until resumed, or no pause)")
    promise_until: date | None = Field(description="A promise hold's promised day (the debtor's calendar)")
