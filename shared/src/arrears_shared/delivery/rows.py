"""Reading `deliveries` rows: the column list every SELECT of a whole row uses, and a result row -> `DeliveryRow`."""

from __future__ import annotations

import json
from typing import Any

from ..events import NoticeDue
from .channel import DeliveryRow

COLUMNS = (
    "notice_id, account_id, channel, to_address, payload, rendered, priority, state, attempts, "
    "next_attempt_at, provider_message_id, last_error, created_at, updated_at, route"
)


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def to_row(r: Any) -> DeliveryRow:
    """A `SELECT {COLUMNS}` result row as a `DeliveryRow`."""
    payload = _loads(r.payload)
    return DeliveryRow(
        notice_id=r.notice_id,
        account_id=r.account_id,
        channel=r.channel,
        to_address=r.to_address,
        notice=NoticeDue.model_validate(payload),
        rendered=_loads(r.rendered),
        priority=r.priority,
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        provider_message_id=r.provider_message_id,
        last_error=r.last_error,
        created_at=r.created_at,
        updated_at=r.updated_at,
        route=r.route,
    )
