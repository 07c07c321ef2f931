"""Load the rule set (file + disabled list + thresholds) and match facts against it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from arrears_shared.money import RateTable, note_unpriced, packaged_rates

from .models import Rule, RuleSet, Trigger

DEFAULT_RULES = "default_rules.yaml"


@dataclass(frozen=True)
class Facts:
    """What a trigger knows about the account when the rules are evaluated."""

    intent: str | None = None
    confidence: float | None = None
    balance_minor: int | None = None  # minor units of `currency`
    currency: str | None = None
    channel: str | None = None
    needs_review: bool = False  # the classifier was not sure: a person reads the reply
    possible_opt_out: bool = False  # ... and it may be an opt-out (messages on that channel are paused)
    band: str | None = None  # account_scored: the model's risk band
    risk_score: int | None = None  # account_scored: the model's risk score (0-100)

    def unpriced(self, rates: RateTable) -> bool:
        """A balance is known but cannot be converted to the reporting currency (no rate)."""
        return bool(self.balance_minor) and not rates.has_rate(self.currency)


def load_rules(
    path: str | None = None, disabled: str = "", thresholds: str | dict[str, Any] | None = None
) -> RuleSet:
    """`path` replaces the packaged defaults; `disabled` = comma-separated rule ids;
    `thresholds` = {"<rule id>.<condition>": value} (JSON text or dict) overriding conditions."""
    raw = (
        Path(path).read_text(encoding="utf-8")
        if path
        else resources.files(__package__).joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
    )
    data = yaml.safe_load(raw)
    off = {x.strip() for x in disabled.split(",") if x.strip()}
    if isinstance(thresholds, str):
        over: dict[str, Any] = json.loads(thresholds) if thresholds.strip() else {}
    else:
        over = thresholds or {}
    ids = {r["id"] for r in data.get("rules", [])}
    unknown = (off - ids) | ({k.split(".", 1)[0] for k in over} - ids)
    if unknown:
        raise ValueError(f"escalation config names unknown rules: {sorted(unknown)}")
    for r in data["rules"]:
        if r["id"] in off:
            r["enabled"] = False
        for key, value in over.items():
            rid, _, cond = key.partition(".")
            if rid == r["id"]:
                r.setdefault("conditions", {})[cond] = value
    return RuleSet.model_validate(data)


def matches(rule: Rule, facts: Facts, rates: RateTable | None = None) -> bool:
    """Do `facts` meet every condition of `rule`? Money conditions are in the reporting currency of `rates`
    (default: the packaged table); a balance that cannot be converted meets them (a person looks)."""
    c = rule.conditions
    if c.intents is not None and facts.intent not in {i.value for i in c.intents}:
        return False
    if c.min_confidence is not None and (facts.confidence is None or facts.confidence < c.min_confidence):
        return False
    if c.max_confidence is not None and (facts.confidence is None or facts.confidence > c.max_confidence):
        return False
    if c.min_balance_minor is not None:
        rates = rates or packaged_rates()
        balance = rates.to_reporting_minor(facts.balance_minor or 0, facts.currency)
        if balance is None:
            note_unpriced(facts.currency, f"escalation.{rule.id}")
        elif balance < c.min_balance_minor:
            return False
    if c.needs_review is not None and facts.needs_review is not c.needs_review:
        return False
    if c.possible_opt_out is not None and facts.possible_opt_out is not c.possible_opt_out:
        return False
    if c.risk_bands is not None and facts.band not in c.risk_bands:
        return False
    if c.min_risk_score is not None and (facts.risk_score is None or facts.risk_score < c.min_risk_score):
        return False
    return not (c.channels is not None and facts.channel not in set(c.channels))


def matching(rules: RuleSet, trigger: Trigger, facts: Facts, rates: RateTable | None = None) -> list[Rule]:
    return [r for r in rules.rules if r.enabled and r.trigger == trigger and matches(r, facts, rates)]


def rule(rules: RuleSet, rule_id: str) -> Rule | None:
    return next((r for r in rules.rules if r.id == rule_id), None)
