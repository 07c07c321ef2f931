"""Runtime configuration the handlers, loop and views share (built once per process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from arrears_shared.clock import Clock
from arrears_shared.compliance import DEFAULT_RULES, RuleSet
from arrears_shared.money import RateTable, packaged_rates, rates_from_file

from .accounts.projection import FoldContext
from .aging import DEFAULT_BOUNDARIES, parse_boundaries
from .payments.models import CustomerNotices, parse_locales
from .schedule.models import Policy, PolicyError, check_currencies, load_policy
from .scores.choice import ScoreUse
from .segments import DEFAULT_BALANCE_BANDS, parse_bands
from .settings import SegmenterSettings


@dataclass
class Deps:
    policy: Policy
    clock: Clock = field(default_factory=Clock)
    rules: RuleSet = DEFAULT_RULES
    boundaries: tuple[int, int, int, int] = DEFAULT_BOUNDARIES
    paid_claim_pause_days: int = 7
    timer_batch: int = 500
    bands: tuple[int, ...] = DEFAULT_BALANCE_BANDS
    rates: RateTable = field(default_factory=packaged_rates)
    notify: CustomerNotices = field(default_factory=CustomerNotices)  # payment retries, confirmations
    score_max_age_days: int = 3  # model scores older than this are not used (scores.choice)

    @property
    def score_use(self) -> ScoreUse:
        return ScoreUse(max_age_days=self.score_max_age_days, rules=self.rules)

    def fold_context(self, now: datetime) -> FoldContext:
        return FoldContext(
            now=now,
            boundaries=self.boundaries,
            bands=self.bands,
            paid_claim_pause_days=self.paid_claim_pause_days,
            rates=self.rates,
            locales=self.notify.locales,
        )

    @classmethod
    def from_settings(cls, s: SegmenterSettings) -> Deps:
        rules = DEFAULT_RULES
        if s.segmenter_compliance_rules_path:
            rules = RuleSet.model_validate(
                yaml.safe_load(Path(s.segmenter_compliance_rules_path).read_text())
            )
        rates = rates_from_file(s.fx_rates_file)
        policy = load_policy(s.segmenter_policy_path)
        problems = check_currencies(policy, rates)
        if problems:
            raise PolicyError(problems)
        return cls(
            policy=policy,
            clock=Clock(offset_s=s.segmenter_clock_offset_s),
            rules=rules,
            boundaries=parse_boundaries(s.segmenter_aging_boundaries),
            paid_claim_pause_days=s.segmenter_paid_claim_pause_days,
            timer_batch=s.segmenter_timer_batch,
            bands=parse_bands(s.segmenter_balance_bands),
            rates=rates,
            score_max_age_days=s.segmenter_score_max_age_days,
            notify=CustomerNotices(
                retry_after=timedelta(seconds=s.segmenter_payment_retry_after_s),
                retries_max=s.segmenter_payment_retries_max,
                pay_with=s.segmenter_payment_option,
                payment_link=s.segmenter_payment_link or None,
                confirmations=frozenset(c for c in s.segmenter_confirmations.split(",") if c.strip()),
                channels=tuple(c.strip() for c in s.segmenter_confirmation_channels.split(",") if c.strip()),
                expiry=timedelta(seconds=s.segmenter_confirmation_expiry_s),
                locales=parse_locales(s.segmenter_locales_by_country),
            ),
        )
