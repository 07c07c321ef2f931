"""Compliance rules as data: contact windows, candidate zones and frequency caps per jurisdiction.

A `RuleSet` is a default jurisdiction plus overrides keyed by ISO country (`"US"`) or country-region
(`"US-MA"`). Resolution merges default <- country <- country-region, field by field, so a state override only
states what is stricter. Load a different table with `RuleSet.model_validate(yaml.safe_load(...))`.

Sources (verify against the primary text before changing a default):
- US: FDCPA 15 U.S.C. 1692c(a)(1) (§805(a)(1)) and Reg F 12 CFR 1006.6(b)(1)(i): no communication before 08:00
  or after 21:00 at the consumer's location; if the location is unknown, the collector must comply with every
  candidate location (all zones the consumer may be in).
- US frequency: Reg F 12 CFR 1006.14(b)(2) presumes calls harassing above 7 in 7 days; every channel declares a
  weekly cap (`ChannelSpec.max_per_week`, 7 for SMS and email) and a jurisdiction may set a stricter one.
- India: RBI fair practices code for recovery agents: contact only between 08:00 and 19:00.
- Weekends and public holidays: no federal US rule forbids them, so the shipped table leaves them open; a
  jurisdiction (or the house default) blocks them with `no_contact_weekdays` and `holiday_calendar` (any
  country code of the `holidays` package, optionally a subdivision), plus `extra_no_contact_dates`.
"""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class FrequencyCap(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_messages: int = Field(ge=0, description="At most this many messages on the channel ...")
    window_days: int = Field(ge=1, description="... within any rolling window of this many days")


class Jurisdiction(BaseModel):
    """All fields optional so that an override only names what it changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_start: time | None = None
    window_end: time | None = None
    window_source: str | None = None
    candidate_zones: list[str] | None = Field(
        None, description="Zones to check when the debtor's zone is unknown (all must allow)"
    )
    region_zones: dict[str, list[str]] | None = Field(
        None, description="Region code -> candidate zones, used when the zone is unknown but the region known"
    )
    frequency_caps: dict[str, FrequencyCap] | None = Field(None, description="channel -> cap")
    no_contact_weekdays: list[int] | None = Field(
        None, description="ISO weekdays (1 = Monday .. 7 = Sunday) with no contact at all, debtor local date"
    )
    holiday_calendar: str | None = Field(
        None,
        description="Country code of the `holidays` package whose public holidays block contact; '' = none",
    )
    holiday_subdivision: str | None = Field(
        None, description="Subdivision for the calendar (e.g. 'CA'); default: the account's region if known"
    )
    extra_no_contact_dates: list[date] | None = Field(None, description="Further local dates with no contact")


class ResolvedJurisdiction(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    window_start: time
    window_end: time
    window_source: str
    candidate_zones: list[str]
    region_zones: dict[str, list[str]]
    frequency_caps: dict[str, FrequencyCap]
    no_contact_weekdays: list[int] = Field(default_factory=list)
    holiday_calendar: str | None = None
    holiday_subdivision: str | None = None
    extra_no_contact_dates: list[date] = Field(default_factory=list)

    @property
    def has_day_rules(self) -> bool:
        return bool(self.no_contact_weekdays or self.holiday_calendar or self.extra_no_contact_dates)


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Jurisdiction
    jurisdictions: dict[str, Jurisdiction] = Field(default_factory=dict)
    _resolved: dict[tuple[str | None, str | None], ResolvedJurisdiction] = PrivateAttr(default_factory=dict)

    def resolve(self, country: str | None, region: str | None) -> ResolvedJurisdiction:
        """The merged rules for a place (cached: a RuleSet is immutable)."""
        key = (country, region)
        # straight to the private dict: `self._resolved` goes through pydantic's __getattr__, which costs a
        # raised AttributeError per call (measured: 12 % of a timer tick)
        cache = self.__pydantic_private__["_resolved"]  # type: ignore[index]
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = self._merge(country, region)
        return hit  # type: ignore[no-any-return]

    def _merge(self, country: str | None, region: str | None) -> ResolvedJurisdiction:
        merged: dict[str, object] = {k: v for k, v in self.default.model_dump().items() if v is not None}
        jid = "default"
        keys: list[str] = []
        if country:
            keys.append(country.upper())
            if region:
                keys.append(f"{country.upper()}-{region.upper()}")
        for key in keys:
            j = self.jurisdictions.get(key)
            if j is None:
                continue
            jid = key
            for k, v in j.model_dump().items():
                if v is None:
                    continue
                if k in ("frequency_caps", "region_zones") and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}  # type: ignore[dict-item]
                else:
                    merged[k] = v
        merged.setdefault("region_zones", {})
        merged.setdefault("frequency_caps", {})
        if not merged.get("holiday_calendar"):
            merged["holiday_calendar"] = None
        elif not merged.get("holiday_subdivision") and region:
            merged["holiday_subdivision"] = region.upper()
        return ResolvedJurisdiction(id=jid, **merged)  # type: ignore[arg-type]


_E = ["America/New_York"]
_C = ["America/Chicago"]
_M = ["America/Denver"]
_P = ["America/Los_Angeles"]
US_CONTINENTAL_ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
]
US_REGION_ZONES: dict[str, list[str]] = {
    **{s: _E for s in "CT DE DC GA MA MD ME NC NH NJ NY OH PA RI SC VA VT WV".split()},
    **{s: _C for s in "AL AR IA IL LA MN MO MS OK WI".split()},
    **{s: _M for s in "CO MT NM UT WY".split()},
    **{s: _P for s in "CA NV WA".split()},
    "AZ": ["America/Phoenix"],
    "FL": ["America/New_York", "America/Chicago"],
    "IN": ["America/Indiana/Indianapolis", "America/Chicago"],
    "KY": ["America/New_York", "America/Chicago"],
    "MI": ["America/Detroit", "America/Menominee"],
    "TN": ["America/Chicago", "America/New_York"],
    "KS": ["America/Chicago", "America/Denver"],
    "NE": ["America/Chicago", "America/Denver"],
    "ND": ["America/Chicago", "America/Denver"],
    "SD": ["America/Chicago", "America/Denver"],
    "TX": ["America/Chicago", "America/Denver"],
    "ID": ["America/Boise", "America/Los_Angeles"],
    "OR": ["America/Los_Angeles", "America/Boise"],
    "AK": ["America/Anchorage", "America/Adak"],
    "HI": ["Pacific/Honolulu"],
    "PR": ["America/Puerto_Rico"],
}

DEFAULT_RULES = RuleSet(
    default=Jurisdiction(
        window_start=time(8, 0),
        window_end=time(21, 0),
        window_source="house default 08:00-21:00 debtor local time",
        candidate_zones=["UTC"],
        region_zones={},
        # each channel's own cap (ChannelSpec.max_per_week, 7 in 7 days for SMS and email) applies where
        # a jurisdiction sets none
    ),
    jurisdictions={
        "US": Jurisdiction(
            window_start=time(8, 0),
            window_end=time(21, 0),
            window_source="FDCPA §805(a)(1); Reg F 12 CFR 1006.6(b)(1)(i)",
            candidate_zones=US_CONTINENTAL_ZONES,
            region_zones=US_REGION_ZONES,
        ),
        "US-MA": Jurisdiction(
            window_source="FDCPA §805(a)(1); 940 CMR 7.04(1)(f) (MA: at most 2 calls/texts per 7 days)",
            frequency_caps={"sms": FrequencyCap(max_messages=2, window_days=7)},
        ),
        "IN": Jurisdiction(
            window_start=time(8, 0),
            window_end=time(19, 0),
            window_source="RBI fair practices code for recovery agents (08:00-19:00)",
            candidate_zones=["Asia/Kolkata"],
        ),
    },
)
