"""`account-changed` -> the few facts of each account the portal needs: what is owed (to show it) and the
verification fact (the last four digits of the phone), sealed with the account's vault key so an erasure
makes it unreadable here too. Other types on the topic (failed payments, retry state) are ignored."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import AccountChanged
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

TAIL_DIGITS = 4


def phone_tail(phone: str | None) -> str | None:
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return digits[-TAIL_DIGITS:] if len(digits) >= TAIL_DIGITS else None


async def handle_accounts(events: Sequence[Envelope], tx: Transaction) -> None:
    latest: dict[str, AccountChanged] = {}
    for env in events:
        ev = env.data
        if isinstance(ev, AccountChanged):
            cur = latest.get(ev.account_id)
            if cur is None or cur.as_of <= ev.as_of:
                latest[ev.account_id] = ev
    if not latest:
        return
    keys = await vault().for_writing(tx.conn, list(latest))
    for a in latest.values():
        key = keys[a.account_id]
        first = a.customer_name.strip().split(" ")[0] if a.customer_name.strip() else None
        channels = sorted(c for c, p in a.contact_points().items() if p.address)
        await tx.conn.execute(
            text(
                f"""INSERT INTO {tx.schema}.accounts (account_id, first_name, phone_tail, balance_minor, currency,
                       due_date, status, removed, timezone, channels, as_of, country, region)
                    VALUES (:id, :fn, :tail, :bal, :cur, :due, :st, :rm, :tz, :ch, :asof, :country, :region)
                    ON CONFLICT (account_id) DO UPDATE SET first_name = EXCLUDED.first_name,
                       phone_tail = EXCLUDED.phone_tail, balance_minor = EXCLUDED.balance_minor,
                       currency = EXCLUDED.currency, due_date = EXCLUDED.due_date, status = EXCLUDED.status,
                       removed = EXCLUDED.removed, timezone = EXCLUDED.timezone, channels = EXCLUDED.channels,
                       as_of = EXCLUDED.as_of, country = EXCLUDED.country, region = EXCLUDED.region,
                       updated_at = now()
                    WHERE {tx.schema}.accounts.as_of <= EXCLUDED.as_of"""
            ),
            {
                "id": a.account_id,
                "fn": seal_value(key, a.account_id, first),
                "tail": seal_value(key, a.account_id, phone_tail(a.phone)),
                "bal": a.balance_minor,
                "cur": a.currency,
                "due": a.due_date,
                "st": a.status.value,
                "rm": a.change == "removed",
                "tz": a.timezone,
                "ch": channels,
                "asof": a.as_of,
                "country": a.country,
                "region": a.region,
            },
        )
