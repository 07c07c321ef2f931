"""Template helpers shared by the dispatchers: a sandboxed Jinja2 environment and the notice context."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from ..events import AgingBucket, Channel, NoticeDue, Tier
from ..links import notice_link
from ..money import minor_exponent

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "INR": "₹", "AUD": "A$", "CAD": "C$"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def money(minor: int, currency: str) -> str:
    """`12345, "USD"` -> `$123.45`; the currency's own ISO 4217 exponent (JPY none, KWD three digits)."""
    sign = "-" if minor < 0 else ""
    exp = minor_exponent(currency)
    whole, frac = divmod(abs(minor), 10**exp)
    amount = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    sym = _SYMBOLS.get(currency)
    return f"{sign}{sym}{amount}" if sym else f"{sign}{amount} {currency}"


def one_line(value: str) -> str:
    """Collapse control characters (CR, LF, tabs ...) to single spaces: safe in headers and SMS text."""
    return _CONTROL.sub(" ", value).strip()


def notice_context(notice: NoticeDue, brand: str) -> dict[str, Any]:
    name = one_line(notice.customer_name)
    return {
        "customer_name": name,
        "first_name": name.split(" ")[0] if name else "there",
        "brand": one_line(brand),
        "amount": money(notice.balance_minor, notice.currency),
        "days_past_due": notice.days_past_due,
        "aging_bucket": notice.aging_bucket.value,
        "tier": notice.tier.value,
        "step": notice.step,
        # confirmations and payment retries (empty for dunning notices)
        "about_amount": (
            money(notice.about_amount_minor, notice.currency) if notice.about_amount_minor is not None else ""
        ),
        "about_date": notice.about_date.isoformat() if notice.about_date else "",
        "plan_every": notice.plan_every or "",
        "reference": one_line(notice.reference or ""),
        "pay_with": one_line(notice.pay_with or ""),
        "retry": notice.retry or 0,
        "retries_max": notice.retries_max or 0,
        # the notice's personal link to the debtor portal ("" without ARREARS_LINK_KEY; arrears_shared.links)
        "pay_link": notice_link(notice),
    }


def sandbox(
    package: str,
    folder: str,
    override_dir: str | None = None,
    autoescape: bool | Callable[[str | None], bool] = False,
) -> SandboxedEnvironment:
    """Sandboxed environment with strict undefined: a template cannot reach Python internals, and a missing
    variable is an error rather than an empty string. `override_dir` (if set) shadows packaged templates."""
    loaders: list[Any] = []
    if override_dir:
        loaders.append(FileSystemLoader(override_dir))
    loaders.append(PackageLoader(package, folder))
    return SandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def sample_notice(tier: Tier, channel: Channel = "sms", to: str = "+15555550100") -> NoticeDue:
    now = datetime.now(UTC)
    return NoticeDue(
        account_id="SAMPLE-1",
        notice_id=f"sample-{tier.value}",
        policy_id="sample",
        policy_version=1,
        step=1,
        tier=tier,
        channel=channel,
        template_id=f"{channel}.{tier.value}",
        to=to,
        customer_name="Alexandra Sample-Name Longfellow",
        balance_minor=1234567,
        currency="USD",
        days_past_due=45,
        aging_bucket=AgingBucket.D31_60,
        timezone="America/New_York",
        due_at=now,
    )
