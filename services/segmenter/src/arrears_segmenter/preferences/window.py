"""The debtor's own contact preferences (issue #19, set in the portal). The channel order is the existing
`channel_preference`; the quiet times (`ContactWindow`: not before / not after a local time, weekdays to
avoid) are kept per account in `segmenter.accounts.contact_window` and only ever narrow the legal window:

- the planner arms the account's next step at the first moment inside both windows (`earliest`), so the
  timer, the console and the next-steps API show when it will really go;
- the compliance gate, when the step fires, allows a channel only inside both and defers to the first
  moment inside both (`compliance.evaluate(window=...)`);
- each notice carries the window (`NoticeDue.contact_window`), so the dispatchers' gate refuses a send that
  waited in a queue past the debtor's hours.

A window the law leaves no time for (e.g. "not before 20:00" where contact ends at 19:00) is ignored by the
gate rather than stopping contact for ever; the decision's reason says so."""

from __future__ import annotations

import logging
from datetime import datetime

from arrears_shared import compliance
from arrears_shared.compliance import RuleSet
from arrears_shared.contact_window import ContactWindow
from pydantic import ValidationError

from ..accounts.account import Account

log = logging.getLogger(__name__)


def debtor_window(acct: Account) -> ContactWindow | None:
    """The account's quiet times, or None (none set, or a stored value this version cannot read)."""
    raw = acct.contact_window
    if not raw:
        return None
    try:
        window = ContactWindow.model_validate(raw)
    except ValidationError:
        log.warning("unreadable contact window ignored", extra={"account_id": acct.account_id})
        return None
    return None if window.empty else window


def set_window(acct: Account, window: ContactWindow) -> str:
    """Store the debtor's quiet times (an empty window clears them); a summary for the decision log."""
    if window.empty:
        acct.contact_window = None
        return "quiet times cleared"
    acct.contact_window = window.model_dump(mode="json")
    return f"quiet times: {window.describe()} (debtor's local time)"


def earliest(acct: Account, due_at: datetime, now: datetime, rules: RuleSet) -> datetime:
    """`due_at` moved to the first moment inside the legal window and the debtor's quiet times, when the
    account has quiet times (unchanged otherwise). A step already due stays due while now is allowed, so a
    re-plan does not move it for nothing."""
    window = debtor_window(acct)
    if window is None:
        return due_at

    def first(t: datetime) -> datetime:
        return compliance.next_allowed(
            t, timezone=acct.timezone, country=acct.country, region=acct.region, rules=rules, window=window
        )

    if due_at >= now:
        return first(due_at)
    at = first(now)
    return due_at if at == now else at
