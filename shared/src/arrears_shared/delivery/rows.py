"""Reading `deliveries` rows: the column list every SELECT of a whole row uses, and a result row -> `DeliveryRow`
with its sealed personal fields opened (`sealing`)."""

from __future__ import annotations

import json
from typing import Any

from ..events import NoticeDue
from ..vault import fields
from ..vault.keys import Keys
from .channel import DeliveryRow
from .sealing import Opener

COLUMNS = (
    "notice_id, account_id, channel, to_address, payload, rendered, priority, state, attempts, "
    "next_attempt_at, provider_message_id, last_error, created_at, updated_at, route"
)


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def to_row(r: Any, keys: Keys) -> DeliveryRow:
    """A `SELECT {COLUMNS}` result row as a `DeliveryRow`, opened with `keys` (`vault().for_reading` of the
    batch's accounts). A row of an erased account reads `[erased]` and is flagged `erased`."""
    opener = Opener(keys, r.account_id)
    payload = _loads(r.payload)
    fields.apply(payload, NoticeDue.personal, opener)
    rendered = _loads(r.rendered)
    if rendered is not None:
        rendered = opener.tree(rendered)
    to_address = opener(r.to_address)
    return DeliveryRow(
        notice_id=r.notice_id,
        account_id=r.account_id,
        channel=r.channel,
        to_address=to_address,
        notice=NoticeDue.model_validate(payload),
        rendered=rendered,
        priority=r.priority,
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        provider_message_id=r.provider_message_id,
        last_error=r.last_error,
        created_at=r.created_at,
        updated_at=r.updated_at,
        route=r.route,
        erased=opener.erased,
        unreadable=opener.unreadable,
    )
