"""Reply understanding: rules (data) + a small matcher + amount/date extraction."""

from .classifier import Classification, classify
from .rules import RULES, Rule

__all__ = ["RULES", "Classification", "Rule", "classify"]
