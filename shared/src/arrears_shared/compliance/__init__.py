"""Compliance gate: contact windows, frequency caps, opt-outs and do-not-contact as data + pure functions.

Used by the segmenter when a notice falls due and by the dispatchers right before a send.
"""

from ..contact_window import ContactWindow
from .gate import DayRule, Decision, candidate_zones, day_rule, evaluate, next_allowed, window_fits
from .rules import DEFAULT_RULES, FrequencyCap, Jurisdiction, ResolvedJurisdiction, RuleSet

__all__ = [
    "DEFAULT_RULES",
    "ContactWindow",
    "DayRule",
    "Decision",
    "FrequencyCap",
    "Jurisdiction",
    "ResolvedJurisdiction",
    "RuleSet",
    "candidate_zones",
    "day_rule",
    "evaluate",
    "next_allowed",
    "window_fits",
]
