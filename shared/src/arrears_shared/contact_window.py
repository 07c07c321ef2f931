"""`ContactWindow`: the debtor's own quiet times, on its own so that both the event contracts
(`OverrideRequested.contact_window`, `NoticeDue.contact_window`) and the compliance gate use one model.

It only ever narrows the legal/policy contact window: the gate intersects the two (a debtor who says "not
before 06:00" is still not contacted before the law's 08:00). Times are the debtor's local time (the account's
zone; when the zone is unknown, every candidate zone of the jurisdiction, like the legal window)."""

from __future__ import annotations

from datetime import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # ISO 1..7
MAX_AVOIDED_DAYS = 5  # at least two days a week stay open


class ContactWindow(BaseModel):
    """When the debtor does not want to be contacted: before `not_before`, from `not_after` on, and on
    `avoid_weekdays` (ISO 1 = Monday .. 7 = Sunday), all in the debtor's local time. An empty window (no
    field set) means "no wish beyond the legal window"."""

    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_extra={"additionalProperties": True})

    not_before: time | None = Field(None, description="No contact before this local time (e.g. 10:00)")
    not_after: time | None = Field(
        None, description="No contact from this local time on (e.g. 18:00); after `not_before`"
    )
    avoid_weekdays: list[int] = Field(
        default_factory=list,
        max_length=MAX_AVOIDED_DAYS,
        description="ISO weekdays (1 = Monday .. 7 = Sunday) with no contact, debtor's local date",
    )

    @model_validator(mode="before")
    @classmethod
    def _days_sorted(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("avoid_weekdays"), list | tuple | set):
            days = data["avoid_weekdays"]
            if all(isinstance(d, int) for d in days):
                data = {**data, "avoid_weekdays": sorted(set(days))}
        return data

    @model_validator(mode="after")
    def _sane(self) -> ContactWindow:
        if any(not 1 <= d <= 7 for d in self.avoid_weekdays):
            raise ValueError("avoid_weekdays are ISO weekdays 1 (Monday) .. 7 (Sunday)")
        if self.not_before is not None and self.not_after is not None and self.not_before >= self.not_after:
            raise ValueError("not_before must be earlier than not_after (a window never crosses midnight)")
        for t in (self.not_before, self.not_after):
            if t is not None and t.tzinfo is not None:
                raise ValueError("times are the debtor's local wall-clock time, without a zone")
        return self

    @property
    def empty(self) -> bool:
        return self.not_before is None and self.not_after is None and not self.avoid_weekdays

    def allows_time(self, local: time) -> bool:
        if self.not_before is not None and local < self.not_before:
            return False
        return self.not_after is None or local < self.not_after

    def allows_weekday(self, isoweekday: int) -> bool:
        return isoweekday not in self.avoid_weekdays

    def describe(self) -> str:
        """`not before 10:00, not after 18:00, not on Sat, Sun` (no personal data: fit for logs)."""
        parts = []
        if self.not_before is not None:
            parts.append(f"not before {self.not_before:%H:%M}")
        if self.not_after is not None:
            parts.append(f"not after {self.not_after:%H:%M}")
        if self.avoid_weekdays:
            parts.append("not on " + ", ".join(WEEKDAY_NAMES[d - 1] for d in self.avoid_weekdays))
        return ", ".join(parts) or "no quiet times"
