"""What dispatcher-sms reads and writes on the broker (see arrears_shared.topology).

Besides outcomes it writes `notice-due`: while every SMS route has been down longer than
`ARREARS_DISPATCH_FAILOVER_AFTER_S`, a queued SMS notice whose step falls back to email is re-issued as the
email notice of the same step (arrears_shared.delivery.failover)."""

from dataclasses import replace

from arrears_shared import topics
from arrears_shared.topology import dispatcher_topology

_BASE = dispatcher_topology(
    "dispatcher-sms",
    "Sends SMS notices through QUO (Twilio as the second provider where configured), exactly once, within"
    " the law; reports each outcome; while SMS is down, re-issues queued steps by email.",
    order=30,
)
TOPOLOGY = replace(_BASE, produces=(*_BASE.produces, topics.NOTICE_DUE))
